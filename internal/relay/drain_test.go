package relay

import (
	"bytes"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestDrain keeps a slow response from the old backend running across a
// switch: the response arrives whole, new connections go to the new
// backend meanwhile, and wait-drained returns only after the old
// connection has ended, with the counts to match.
func TestDrain(t *testing.T) {
	a := startHTTPBackend(t, "a")
	b := startHTTPBackend(t, "b")
	r := startRelay(t, Config{})
	r.set(t, "a", a.addr)

	var clientDone atomic.Bool
	type result struct {
		status int
		body   []byte
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		status, body, err := rawGet(r.Addr().String(), "/slow", func() { clientDone.Store(true) })
		slow <- result{status, body, err}
	}()
	select {
	case <-a.started:
	case <-time.After(5 * time.Second):
		t.Fatal("slow request never reached backend a")
	}

	st := r.status(t)
	if st.Current == nil || st.Current.Name != "a" || st.Current.Active != 1 || st.Current.Total != 1 {
		t.Fatalf("status with one request in flight: %+v", st.Current)
	}

	st = r.set(t, "b", b.addr)
	if st.Current.Name != "b" || st.Current.Active != 0 || len(st.Draining) != 1 ||
		st.Draining[0].Name != "a" || st.Draining[0].Active != 1 || st.Draining[0].Total != 1 {
		t.Fatalf("status after switch: %+v", st)
	}

	res, err := r.ctl.WaitDrained(t.Context(), "a", 50*time.Millisecond)
	if err != nil || res.Drained || res.Waited != 1 || res.Open != 1 {
		t.Fatalf("wait-drained a with a request in flight: %+v, %v; want not drained, waited 1, open 1", res, err)
	}

	waited := make(chan WaitResult, 1)
	waitErr := make(chan error, 1)
	go func() {
		// A second client: the test's own client is used concurrently.
		c, err := Dial(t.Context(), r.cfg.ControlSocket)
		if err != nil {
			waitErr <- err
			return
		}
		defer func() { _ = c.Close() }()
		res, err := c.WaitDrained(t.Context(), "a", 10*time.Second)
		if err != nil {
			waitErr <- err
			return
		}
		waited <- res
	}()

	// New connections go to b while a drains.
	body, err := get(t.Context(), newHTTPClient(), r.url("/"))
	if err != nil || body != "b" {
		t.Fatalf("request during drain: %q, %v; want b", body, err)
	}
	select {
	case res := <-waited:
		t.Fatalf("wait-drained returned while the slow request was in flight: %+v", res)
	case err := <-waitErr:
		t.Fatal(err)
	case <-time.After(100 * time.Millisecond):
	}

	a.finish()
	var got WaitResult
	select {
	case got = <-waited:
	case err := <-waitErr:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("wait-drained did not return after the slow request ended")
	}
	if !clientDone.Load() {
		t.Fatal("wait-drained returned before the client had its whole response")
	}
	s := <-slow
	want := append(bytes.Repeat([]byte{'x'}, slowFirst), bytes.Repeat([]byte{'y'}, slowSecond)...)
	if s.err != nil || s.status != http.StatusOK || !bytes.Equal(s.body, want) {
		t.Fatalf("slow response across the switch: status %d, %d bytes, %v; want 200 and %d bytes", s.status, len(s.body), s.err, len(want))
	}
	if !got.Drained || got.Waited != 1 || got.Open != 0 || len(got.Draining) != 1 || got.Draining[0].Active != 0 || got.Draining[0].Total != 1 {
		t.Fatalf("wait-drained result: %+v", got)
	}

	// Switching back to a draining target makes it current again with its
	// counts; b now drains, and its one connection has ended.
	st = r.set(t, "a", a.addr)
	if st.Generation != 3 || st.Current.Name != "a" || st.Current.Total != 1 || len(st.Draining) != 1 || st.Draining[0].Name != "b" {
		t.Fatalf("status after switching back: %+v", st)
	}
	res, err = r.ctl.WaitDrained(t.Context(), "b", 5*time.Second)
	if err != nil || !res.Drained || res.Waited != 0 || res.Draining[0].Total != 1 || res.Draining[0].Active != 0 {
		t.Fatalf("wait-drained b: %+v, %v", res, err)
	}
	st, err = r.ctl.Forget(t.Context(), "b")
	if err != nil || len(st.Draining) != 0 {
		t.Fatalf("forget b: %+v, %v", st, err)
	}
}

// TestWaitedCountsOpenWhenTrafficMoved: a drain report's "waited" is the
// connections open at the switch, not at the start of the wait. An app
// told to drain (say by --drain-signal) may close some in between; they
// were still open when traffic moved and were waited for.
func TestWaitedCountsOpenWhenTrafficMoved(t *testing.T) {
	s := newState()
	none := func(int, Target, time.Time) error { return nil }
	a := Target{Name: "a", Addrs: []string{"127.0.0.1:1"}}
	b := Target{Name: "b", Addrs: []string{"127.0.0.1:2"}}
	if _, _, _, err := s.set(a, time.Now(), none); err != nil {
		t.Fatal(err)
	}
	var conns []*backend
	for range 3 {
		c := s.current
		if !s.acquire(c) {
			t.Fatal("acquire refused on the current target")
		}
		conns = append(conns, c)
	}
	if _, _, _, err := s.set(b, time.Now(), none); err != nil {
		t.Fatal(err)
	}
	s.release(conns[0]) // closed by the app before the wait began
	done := make(chan WaitResult, 1)
	go func() {
		res, err := s.waitDrained(t.Context(), "a", 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	s.release(conns[1])
	s.release(conns[2])
	res := <-done
	if !res.Drained || res.Waited != 3 || res.Open != 0 {
		t.Fatalf("wait-drained: %+v; want drained, waited 3 (open at the switch), open 0", res)
	}
}
