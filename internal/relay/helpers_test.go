package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testRelay is a relay started for one test, with a control client.
type testRelay struct {
	*Relay
	ctl    *Client
	cfg    Config
	cancel context.CancelFunc
	warns  *atomic.Int64
	once   sync.Once
}

// startRelay starts a relay on a loopback port with a fresh control socket
// (unless cfg names them) and stops it, checking for leaked goroutines, when
// the test ends.
func startRelay(t *testing.T, cfg Config) *testRelay {
	t.Helper()
	if cfg.Listener == nil && cfg.Listen == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Listener = ln
	}
	if cfg.ControlSocket == "" {
		cfg.ControlSocket = filepath.Join(socketDir(t), "ctl.sock")
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 2 * time.Second // a failing test must not hang 10s
	}
	warns := new(atomic.Int64)
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, warns)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start relay: %v", err)
	}
	c, err := Dial(ctx, cfg.ControlSocket)
	if err != nil {
		cancel()
		t.Fatalf("dial control: %v", err)
	}
	tr := &testRelay{Relay: r, ctl: c, cfg: cfg, cancel: cancel, warns: warns}
	// Cleanups run last-registered first: check for leaks once, after every
	// relay of the test has stopped.
	if _, loaded := leakChecked.LoadOrStore(t, true); !loaded {
		t.Cleanup(func() {
			leakChecked.Delete(t)
			checkNoRelayGoroutines(t)
		})
	}
	t.Cleanup(func() { tr.stop(t) })
	return tr
}

var leakChecked sync.Map // *testing.T -> bool

// stop shuts the relay down and waits for it.
func (tr *testRelay) stop(t *testing.T) {
	t.Helper()
	tr.once.Do(func() {
		if err := tr.ctl.Close(); err != nil {
			t.Errorf("close control client: %v", err)
		}
		tr.cancel()
		if err := tr.Wait(); err != nil {
			t.Errorf("relay wait: %v", err)
		}
	})
}

func (tr *testRelay) url(path string) string {
	return "http://" + tr.Addr().String() + path
}

func (tr *testRelay) set(t *testing.T, name string, addrs ...string) Status {
	t.Helper()
	st, err := tr.ctl.Set(t.Context(), Target{Name: name, Addrs: addrs})
	if err != nil {
		t.Fatalf("set %s: %v", name, err)
	}
	return st
}

func (tr *testRelay) status(t *testing.T) Status {
	t.Helper()
	st, err := tr.ctl.Status(t.Context())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// socketDir is a short temporary directory: unix socket paths are limited
// to 108 bytes and test names make t.TempDir long.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "relay")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// countingHandler forwards records to the test log and counts warnings, so
// tests can assert that the relay never gave up on a connection.
type countingHandler struct {
	slog.Handler
	warns *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.warns.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{Handler: h.Handler.WithAttrs(as), warns: h.warns}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{Handler: h.Handler.WithGroup(name), warns: h.warns}
}

func testLogger(t *testing.T, warns *atomic.Int64) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("RELAY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	h := slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level})
	return slog.New(countingHandler{Handler: h, warns: warns})
}

// httpBackend is a small app: GET answers its name, POST answers its name
// and the sha256 of the body, /slow streams a large body in two parts with
// a pause in between that the test controls.
type httpBackend struct {
	name    string
	addr    string
	hits    atomic.Int64
	started chan struct{} // receives when /slow has sent its first part
	release chan struct{} // closed to let /slow finish
	once    sync.Once
}

// finish lets /slow requests complete.
func (b *httpBackend) finish() { b.once.Do(func() { close(b.release) }) }

const (
	slowFirst  = 64 << 10
	slowSecond = 1 << 20
)

func startHTTPBackend(t *testing.T, name string) *httpBackend {
	t.Helper()
	return startHTTPBackendOn(t, name, "127.0.0.1:0")
}

func startHTTPBackendOn(t *testing.T, name, addr string) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	b := &httpBackend{
		name:    name,
		addr:    ln.Addr().String(),
		started: make(chan struct{}, 1),
		release: make(chan struct{}),
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		b.finish()
		if err := srv.Close(); err != nil {
			t.Errorf("backend %s close: %v", name, err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("backend %s serve: %v", name, err)
		}
	})
	return b
}

func (b *httpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	switch {
	case r.URL.Path == "/slow":
		w.Header().Set("Content-Length", fmt.Sprint(slowFirst+slowSecond))
		if _, err := w.Write(bytes.Repeat([]byte{'x'}, slowFirst)); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		b.started <- struct{}{}
		<-b.release
		if _, err := w.Write(bytes.Repeat([]byte{'y'}, slowSecond)); err != nil {
			return
		}
	case r.Method == http.MethodPost:
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s", b.name, hex.EncodeToString(h.Sum(nil)))
	default:
		fmt.Fprint(w, b.name)
	}
}

// newHTTPClient opens a new TCP connection for every request, like nginx's
// default upstream behaviour, and never retries on its own.
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   15 * time.Second,
	}
}

// get fetches url and returns the body; non-200 is an error.
func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

// closedAddr returns a loopback address nothing listens on: dials to it are
// refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// rawGet sends a GET over a new TCP connection to addr and reads the whole
// response, then calls read (if not nil) and only then closes the
// connection: a relay counting the connection counts it until after read.
func rawGet(addr, path string, read func()) (status int, body []byte, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = c.Close() }()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n", path); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil, err
	}
	body, err = io.ReadAll(resp.Body)
	if read != nil {
		read()
	}
	return resp.StatusCode, body, err
}

// checkNoRelayGoroutines fails the test if any goroutine is still running
// code of the package (not its tests) after the relay has stopped. A
// goroutine of context.AfterFunc may be finishing its Close, so allow a
// brief settle: there is no event to wait on for another goroutine's exit.
func checkNoRelayGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		leaked := relayGoroutines()
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d relay goroutines still running after stop:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func relayGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for line := range strings.SplitSeq(g, "\n") {
			line = strings.TrimSpace(line)
			if strings.Contains(line, "/internal/relay/") && strings.Contains(line, ".go:") && !strings.Contains(line, "_test.go:") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
