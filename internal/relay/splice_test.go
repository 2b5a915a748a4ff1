package relay

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// rawBackend accepts connections on loopback and runs serve on each.
func rawBackend(t testing.TB, serve func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		if err := ln.Close(); err != nil {
			t.Errorf("close raw backend: %v", err)
		}
		<-done
	})
	return ln.Addr().String()
}

func dialRelay(t *testing.T, r *testRelay) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

// TestHalfClose: the client's FIN reaches the backend, which reads to EOF
// and only then replies; and the other way round, the backend's FIN reaches
// the client, which then still sends to the backend.
func TestHalfClose(t *testing.T) {
	fromClient := make(chan string, 1)
	upload := rawBackend(t, func(c *net.TCPConn) {
		b, err := io.ReadAll(c) // returns only at the client's FIN
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "got %d bytes", len(b)); err != nil {
			return
		}
	})
	greeter := rawBackend(t, func(c *net.TCPConn) {
		if _, err := io.WriteString(c, "hello"); err != nil {
			return
		}
		if err := c.CloseWrite(); err != nil {
			return
		}
		b, err := io.ReadAll(c)
		if err != nil {
			fromClient <- "error: " + err.Error()
			return
		}
		fromClient <- string(b)
	})
	r := startRelay(t, Config{})

	r.set(t, "upload", upload)
	c := dialRelay(t, r)
	payload := strings.Repeat("p", 300<<10)
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if want := fmt.Sprintf("got %d bytes", len(payload)); err != nil || string(reply) != want {
		t.Fatalf("reply after client half-close: %q, %v; want %q", reply, err, want)
	}

	r.set(t, "greeter", greeter)
	c = dialRelay(t, r)
	greeting, err := io.ReadAll(c) // ends at the backend's FIN
	if err != nil || string(greeting) != "hello" {
		t.Fatalf("greeting before backend half-close: %q, %v", greeting, err)
	}
	if _, err := io.WriteString(c, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-fromClient:
		if got != "bye" {
			t.Fatalf("backend read %q after its half-close; want bye", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client data after the backend's half-close never arrived")
	}

	if res, err := r.ctl.WaitDrained(t.Context(), "upload", 5*time.Second); err != nil || !res.Drained {
		t.Fatalf("wait-drained upload: %+v, %v", res, err)
	}
}

// TestResetClosesBoth: a client that resets its connection gets the backend
// connection closed too (a half-close would leave the backend waiting), and
// the connection stops counting.
func TestResetClosesBoth(t *testing.T) {
	backendSaw := make(chan error, 1)
	accepted := make(chan struct{}, 1)
	idle := rawBackend(t, func(c *net.TCPConn) {
		accepted <- struct{}{}
		buf := make([]byte, 1)
		_, err := c.Read(buf) // the client never sends: only a close ends this
		backendSaw <- err
	})
	r := startRelay(t, Config{})
	r.set(t, "idle", idle)
	c := dialRelay(t, r)
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("backend never got the connection")
	}
	r.set(t, "other", closedAddr(t))
	if res, err := r.ctl.WaitDrained(t.Context(), "idle", 50*time.Millisecond); err != nil || res.Drained {
		t.Fatalf("wait-drained with an idle connection open: %+v, %v; want not drained", res, err)
	}
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // sends RST
		t.Fatal(err)
	}
	select {
	case err := <-backendSaw:
		if err == nil {
			t.Fatal("backend read data; want its connection closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend connection still open after the client reset")
	}
	if res, err := r.ctl.WaitDrained(t.Context(), "idle", 5*time.Second); err != nil || !res.Drained {
		t.Fatalf("wait-drained after reset: %+v, %v", res, err)
	}
}

// TestBackendResetsCounted: the relay counts, per target, the connections
// its backend ended with a reset, and only those: a backend that answers
// and closes in order counts none, and neither does a client that resets
// its own connection.
func TestBackendResetsCounted(t *testing.T) {
	readLine := func(c *net.TCPConn) bool {
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err == nil
	}
	cases := []struct {
		name  string
		serve func(c *net.TCPConn)
		// client runs one connection through the relay.
		client func(t *testing.T, c *net.TCPConn)
		conns  int
		want   uint64
	}{
		{
			name: "backend resets",
			serve: func(c *net.TCPConn) {
				if !readLine(c) {
					return
				}
				_ = c.SetLinger(0) // close sends RST
				_ = c.Close()
			},
			client: func(t *testing.T, c *net.TCPConn) {
				if _, err := io.WriteString(c, "req\n"); err != nil {
					t.Fatal(err)
				}
				if b, _ := io.ReadAll(c); len(b) != 0 {
					t.Fatalf("read %q from a backend that resets", b)
				}
			},
			conns: 3, want: 3,
		},
		{
			name: "backend closes in order",
			serve: func(c *net.TCPConn) {
				if !readLine(c) {
					return
				}
				_, _ = io.WriteString(c, "ok")
			},
			client: func(t *testing.T, c *net.TCPConn) {
				if _, err := io.WriteString(c, "req\n"); err != nil {
					t.Fatal(err)
				}
				if b, err := io.ReadAll(c); err != nil || string(b) != "ok" {
					t.Fatalf("reply %q, %v; want ok", b, err)
				}
				if err := c.CloseWrite(); err != nil { // the other half, in order too
					t.Fatal(err)
				}
			},
			conns: 3, want: 0,
		},
		{
			name: "client resets",
			serve: func(c *net.TCPConn) {
				_, _ = io.Copy(io.Discard, c) // until the relay closes it
			},
			client: func(t *testing.T, c *net.TCPConn) {
				if _, err := io.WriteString(c, "req\n"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond) // let the request reach the backend
				if err := c.SetLinger(0); err != nil {
					t.Fatal(err)
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			},
			conns: 3, want: 0,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, Config{})
			r.set(t, "app", rawBackend(t, tc.serve))
			for range tc.conns {
				tc.client(t, dialRelay(t, r))
			}
			r.set(t, "other", closedAddr(t))
			res, err := r.ctl.WaitDrained(t.Context(), "app", 5*time.Second)
			if err != nil || !res.Drained {
				t.Fatalf("wait-drained app: %+v, %v", res, err)
			}
			var app *TargetStatus
			for i := range res.Draining {
				if res.Draining[i].Name == "app" {
					app = &res.Draining[i]
				}
			}
			if app == nil {
				t.Fatalf("app not draining: %+v", res.Status)
			}
			if app.Total != uint64(tc.conns) || app.Resets != tc.want {
				t.Fatalf("app: %d connections, %d resets; want %d connections, %d resets", app.Total, app.Resets, tc.conns, tc.want)
			}
		})
	}
}
