package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Label marks every Docker object testenv creates (value "1"), so a leak is
// easy to find: docker ps -a --filter label=baton.test.
const Label = "baton.test"

// UniqueName returns prefix followed by 8 random hex digits, a valid Docker
// object name when prefix is one.
func UniqueName(prefix string) string {
	var b [4]byte
	// crypto/rand.Read never returns an error (it crashes the program instead).
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// WaitHTTP waits until GET url answers 2xx, polling every 50ms (there is no
// event for "ready"), and fails the test when timeout passes.
func WaitHTTP(t TB, url string, timeout time.Duration) {
	t.Helper()
	if err := waitHTTP(t.Context(), url, timeout, func(r *http.Response) bool { return r.StatusCode/100 == 2 }); err != nil {
		t.Fatalf("%v", err)
	}
}

// waitHTTP polls url until ok accepts a response.
func waitHTTP(ctx context.Context, url string, timeout time.Duration, ok func(*http.Response) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A fresh connection each time: a kept-alive one could reach an old server.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: 2 * time.Second}
	last := "no answer yet"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", url, err)
		}
		resp, err := c.Do(req)
		if err == nil {
			_, copyErr := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			closeErr := resp.Body.Close()
			switch {
			case copyErr != nil:
				last = "reading body: " + copyErr.Error()
			case closeErr != nil:
				last = "closing body: " + closeErr.Error()
			case ok(resp):
				return nil
			default:
				last = "status " + resp.Status
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("wait for %s: not ready after %s (last: %s)", url, timeout, last)
			}
			return fmt.Errorf("wait for %s: canceled (last: %s): %w", url, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// cleanupContext is for work done in a cleanup, when the test's context has
// already been canceled. Generous: on a loaded machine (load average 50 seen
// while parallel suites ran) a forced remove took over 30 s, and a cleanup
// that gives up fails a test that passed.
func cleanupContext(t TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
}
