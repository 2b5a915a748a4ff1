package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load is load in progress. Stop it, or Wait for its bound.
type Load struct {
	cfg    Config
	start  time.Time
	cancel context.CancelFunc // stops new requests
	done   chan struct{}      // closed when every client has returned
	issued atomic.Int64       // requests started (reserved against MaxRequests)
	ended  atomic.Int64       // requests finished

	mu      sync.Mutex
	reason  string // why new requests stopped
	samples [][]Sample
	result  *Result
}

// Start starts the clients and returns at once. The load stops starting
// requests when Duration passes, MaxRequests have been started, ctx ends or
// Stop is called; requests in flight then finish (within Timeout) rather
// than being cut off and miscounted as failures.
func Start(ctx context.Context, cfg Config) (*Load, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Load{cfg: cfg, start: time.Now(), done: make(chan struct{}), samples: make([][]Sample, cfg.Clients)}
	var runCtx context.Context
	if cfg.Duration > 0 {
		runCtx, l.cancel = context.WithTimeout(ctx, cfg.Duration)
	} else {
		runCtx, l.cancel = context.WithCancel(ctx)
	}
	// In-flight requests outlive the stop signal; only Timeout bounds them.
	reqCtx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.samples[i] = l.client(runCtx, reqCtx, i)
		}()
	}
	go func() {
		wg.Wait()
		l.setReason(runCtx, ctx)
		l.cancel()
		close(l.done)
	}()
	return l, nil
}

// Run generates load until its bound (or ctx's end) and returns the result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	l, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return l.Wait(), nil
}

// Done is closed when every client has stopped.
func (l *Load) Done() <-chan struct{} { return l.done }

// Completed returns how many requests have finished so far, for a test that
// waits until load flows before it deploys.
func (l *Load) Completed() int { return int(l.ended.Load()) }

// Wait waits for the load to reach its bound and returns the result.
func (l *Load) Wait() *Result {
	<-l.done
	return l.collect()
}

// Stop stops starting requests, waits for those in flight and returns the
// result. It may be called more than once.
func (l *Load) Stop() *Result {
	l.mu.Lock()
	if l.reason == "" {
		l.reason = "stopped"
	}
	l.mu.Unlock()
	l.cancel()
	return l.Wait()
}

func (l *Load) setReason(runCtx, parent context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.reason != "":
	case parent.Err() != nil:
		l.reason = "canceled: " + parent.Err().Error()
	case runCtx.Err() != nil:
		l.reason = "duration"
	default:
		l.reason = "max requests"
	}
}

func (l *Load) collect() *Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.result == nil {
		var all []Sample
		for _, s := range l.samples {
			all = append(all, s...)
		}
		l.result = newResult(all, l.start, time.Now(), l.reason)
	}
	return l.result
}

var postBody = bytes.Repeat([]byte("b"), BodySize)

// client runs one client's request loop until stop ends or the request
// budget is spent.
func (l *Load) client(stop, reqCtx context.Context, id int) []Sample {
	tr := &http.Transport{
		Proxy:               nil, // never send the load anywhere but the URL
		DialContext:         (&net.Dialer{Timeout: l.cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: l.cfg.Timeout}
	var interval time.Duration
	if l.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / l.cfg.Rate)
	}
	var samples []Sample
	// Spread POSTs evenly: each client starts at a different phase.
	acc := float64(id) / float64(l.cfg.Clients)
	next := time.Now()
	for {
		if stop.Err() != nil {
			return samples
		}
		if max := l.cfg.MaxRequests; max > 0 && l.issued.Add(1) > int64(max) {
			return samples
		}
		acc += l.cfg.PostRatio
		method := http.MethodGet
		if acc >= 1 {
			acc--
			method = http.MethodPost
		}
		s := l.do(reqCtx, hc, method)
		s.Client = id
		samples = append(samples, s)
		l.ended.Add(1)
		if interval > 0 {
			next = next.Add(interval)
			if wait := time.Until(next); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-stop.Done():
					t.Stop()
					return samples
				case <-t.C:
				}
			} else {
				next = time.Now() // behind: go on at once, without a burst to catch up
			}
		}
	}
}

// do sends one request and records it.
func (l *Load) do(ctx context.Context, hc *http.Client, method string) Sample {
	s := Sample{Method: method}
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader(postBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.cfg.URL, body)
	if err != nil {
		s.Start = time.Now()
		s.Err = err.Error()
		return s
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { s.Reused = info.Reused },
	}))
	s.Start = time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		s.Duration = time.Since(s.Start)
		s.Err = err.Error()
		return s
	}
	s.Status = resp.StatusCode
	s.Version = resp.Header.Get("X-Version")
	// Keep the start of the body for the failure reason, read the rest so
	// the connection can be reused.
	var head [128]byte
	n, readErr := io.ReadFull(resp.Body, head[:])
	if errors.Is(readErr, io.EOF) || errors.Is(readErr, io.ErrUnexpectedEOF) {
		readErr = nil // a body shorter than head
	} else if readErr == nil {
		_, readErr = io.Copy(io.Discard, resp.Body)
	}
	closeErr := resp.Body.Close()
	s.Duration = time.Since(s.Start)
	switch {
	case readErr != nil:
		s.Err = "reading body: " + readErr.Error()
	case closeErr != nil:
		s.Err = "closing body: " + closeErr.Error()
	case resp.StatusCode/100 != 2:
		s.Err = fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(head[:n])))
	}
	return s
}
