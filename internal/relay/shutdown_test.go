package relay

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestShutdownWaitsForOpenConnections: stopping the relay stops accepting
// but lets a response in flight finish whole before Wait returns.
func TestShutdownWaitsForOpenConnections(t *testing.T) {
	a := startHTTPBackend(t, "a")
	r := startRelay(t, Config{})
	r.set(t, "a", a.addr)

	type result struct {
		status int
		body   []byte
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		status, body, err := rawGet(r.Addr().String(), "/slow", nil)
		slow <- result{status, body, err}
	}()
	<-a.started

	r.cancel()
	stopped := make(chan struct{})
	go func() {
		r.stop(t)
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("relay stopped with a response in flight")
	case <-time.After(100 * time.Millisecond):
	}
	a.finish()
	s := <-slow
	if s.err != nil || s.status != http.StatusOK || len(s.body) != slowFirst+slowSecond || !bytes.HasSuffix(s.body, []byte("yyy")) {
		t.Fatalf("response in flight at shutdown: status %d, %d bytes, %v", s.status, len(s.body), s.err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not stop after its last connection ended")
	}
	if _, err := net.Dial("tcp", r.Addr().String()); err == nil {
		t.Fatal("stopped relay still accepts connections")
	}
}

// TestShutdownGraceClosesConnections: connections still open when the
// grace period ends are closed, on both sides, and control requests end.
func TestShutdownGraceClosesConnections(t *testing.T) {
	backendSaw := make(chan error, 1)
	accepted := make(chan struct{}, 1)
	idle := rawBackend(t, func(c *net.TCPConn) {
		accepted <- struct{}{}
		_, err := c.Read(make([]byte, 1))
		backendSaw <- err
	})
	r := startRelay(t, Config{ShutdownGrace: 200 * time.Millisecond})
	r.set(t, "idle", idle)
	c := dialRelay(t, r)
	<-accepted
	r.set(t, "next", closedAddr(t))

	waitErr := make(chan error, 1)
	go func() {
		cl, err := Dial(t.Context(), r.cfg.ControlSocket)
		if err != nil {
			waitErr <- err
			return
		}
		defer func() { _ = cl.Close() }()
		_, err = cl.WaitDrained(t.Context(), "idle", time.Minute)
		waitErr <- err
	}()
	// Make sure the wait is blocked before shutting down.
	if res, err := r.ctl.WaitDrained(t.Context(), "idle", 50*time.Millisecond); err != nil || res.Drained {
		t.Fatalf("wait-drained: %+v, %v", res, err)
	}

	start := time.Now()
	r.stop(t)
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Fatalf("relay stopped after %v; want about its 200ms grace", d)
	}
	if err := <-waitErr; err == nil {
		t.Fatal("wait-drained in progress at shutdown returned no error")
	}
	if err := <-backendSaw; err == nil {
		t.Fatal("backend connection not closed at the end of the grace period")
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read after forced close: %d, %v; want EOF or reset", n, err)
	}
}
