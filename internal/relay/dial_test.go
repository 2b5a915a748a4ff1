package relay

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestDialFallbacks: a refused addr falls over to the target's next addr,
// and a refused current target falls over to a draining target still up,
// but not to one that was forgotten.
func TestDialFallbacks(t *testing.T) {
	a := startHTTPBackend(t, "a")
	dead := closedAddr(t)
	r := startRelay(t, Config{DialDeadline: 400 * time.Millisecond})
	c := newHTTPClient()

	r.set(t, "a-two-addrs", dead, a.addr)
	if body, err := get(t.Context(), c, r.url("/")); err != nil || body != "a" {
		t.Fatalf("first addr refused: got %q, %v; want the second addr to serve", body, err)
	}

	r.set(t, "a", a.addr)
	r.set(t, "dead", dead)
	if body, err := get(t.Context(), c, r.url("/")); err != nil || body != "a" {
		t.Fatalf("current target refused: got %q, %v; want draining a to serve", body, err)
	}
	res, err := r.ctl.WaitDrained(t.Context(), "a", 5*time.Second)
	if err != nil || !res.Drained {
		t.Fatalf("wait-drained a: %+v, %v", res, err)
	}
	if res.Current.Name != "dead" || res.Current.Total != 0 || len(res.Draining) != 2 ||
		res.Draining[0].Name != "a" || res.Draining[0].Total != 1 {
		t.Fatalf("counts after fallback to draining: %+v", res.Status)
	}
	if _, err := r.ctl.Forget(t.Context(), "a-two-addrs"); err != nil {
		t.Fatal(err)
	}
	if r.warns.Load() != 0 {
		t.Fatalf("relay warned %d times though every connection was served", r.warns.Load())
	}

	if _, err := r.ctl.Forget(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if body, err := get(t.Context(), c, r.url("/")); err == nil {
		t.Fatalf("forgotten target still used as a fallback: got %q", body)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("relay gave up after %v, before its 400ms dial deadline", d)
	}
	if r.warns.Load() != 1 {
		t.Fatalf("relay warned %d times for one abandoned connection; want 1", r.warns.Load())
	}
	if st := r.status(t); st.Current.Active != 0 || st.Current.Total != 0 || len(st.Draining) != 0 {
		t.Fatalf("counts after a failed dial: %+v", st)
	}
}

// TestDialRetriesUntilBackendAppears: with no fallback, a refused dial is
// retried until the backend starts listening, and the request succeeds.
func TestDialRetriesUntilBackendAppears(t *testing.T) {
	addr := closedAddr(t)
	r := startRelay(t, Config{DialDeadline: 5 * time.Second})
	r.set(t, "late", addr)

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		body, err := get(t.Context(), newHTTPClient(), r.url("/"))
		got <- result{body, err}
	}()
	select {
	case res := <-got:
		t.Fatalf("request answered before the backend existed: %q, %v", res.body, res.err)
	case <-time.After(300 * time.Millisecond):
	}
	startHTTPBackendOn(t, "late", addr)
	select {
	case res := <-got:
		if res.err != nil || res.body != "late" {
			t.Fatalf("request while the backend was starting: %q, %v", res.body, res.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request not served after the backend started")
	}
	if r.warns.Load() != 0 {
		t.Fatalf("relay warned %d times though the connection was served", r.warns.Load())
	}
}

// TestDialGivesUp: when nothing answers until the dial deadline the client
// connection is closed without a byte, and the counts stay at zero.
func TestDialGivesUp(t *testing.T) {
	r := startRelay(t, Config{DialDeadline: 300 * time.Millisecond})
	r.set(t, "dead", closedAddr(t))
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read from an abandoned connection: %d bytes, %v; want EOF", n, err)
	}
	if r.warns.Load() != 1 {
		t.Fatalf("relay warned %d times; want 1 give-up", r.warns.Load())
	}
}

// TestNoTargetYet: a connection accepted before any target is set waits
// for one and is then served.
func TestNoTargetYet(t *testing.T) {
	a := startHTTPBackend(t, "a")
	r := startRelay(t, Config{DialDeadline: 5 * time.Second})
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		body, err := get(t.Context(), newHTTPClient(), r.url("/"))
		got <- result{body, err}
	}()
	select {
	case res := <-got:
		t.Fatalf("request answered with no target set: %q, %v", res.body, res.err)
	case <-time.After(200 * time.Millisecond):
	}
	r.set(t, "a", a.addr)
	select {
	case res := <-got:
		if res.err != nil || res.body != "a" {
			t.Fatalf("request after the first set: %q, %v", res.body, res.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting connection not served after the target was set")
	}
	if st := r.status(t); st.Current.Total != 1 {
		t.Fatalf("status: %+v", st.Current)
	}
}
