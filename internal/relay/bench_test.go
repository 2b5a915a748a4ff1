package relay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// What one connection costs the relay. Each benchmark op is one whole
// connection as nginx makes it (one upstream connection per request):
// dial, send a small request, read the small reply to EOF, close. Run with
//
//	go test -run '^$' -bench Connection -benchmem ./internal/relay/
//
// BenchmarkConnectionDirect is the same connection without the relay: the
// difference between the two is the relay's cost (CPU time, allocations).

var (
	benchRequest = []byte("GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
	benchReply   = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
)

// oneShotBackend answers every connection with benchReply once it has read
// the request, then closes, as an app behind nginx does with Connection:
// close. It stops with the benchmark.
func oneShotBackend(tb testing.TB) string {
	tb.Helper()
	return rawBackend(tb, func(c *net.TCPConn) {
		buf := make([]byte, len(benchRequest))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		_, _ = c.Write(benchReply)
	})
}

// benchRelay starts a relay in front of backend, quiet (warnings fail the
// benchmark), and stops it with the benchmark.
func benchRelay(b *testing.B, backend string) *Relay {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(socketDir(b), "ctl.sock")
	ctx, cancel := context.WithCancel(b.Context())
	r, err := Start(ctx, Config{
		Listener: ln, ControlSocket: sock, ShutdownGrace: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		_ = r.Wait()
	})
	c, err := Dial(ctx, sock)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Set(ctx, Target{Name: "bench", Addrs: []string{backend}}); err != nil {
		b.Fatal(err)
	}
	return r
}

// roundTrip is one connection: dial, request, reply to EOF, close.
func roundTrip(b *testing.B, addr string, buf *bytes.Buffer) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Write(benchRequest); err != nil {
		b.Fatal(err)
	}
	buf.Reset()
	if _, err := buf.ReadFrom(c); err != nil {
		b.Fatal(err)
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), benchReply) {
		b.Fatalf("reply %q, want %q", buf.Bytes(), benchReply)
	}
}

// cpuTime is the process's user and system CPU time so far. Wall time per
// op depends on how busy the machine is; CPU time much less.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ns/op: the CPU time the whole process (client,
// backend and, if there is one, relay) spent per connection.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

func BenchmarkConnectionDirect(b *testing.B) {
	backend := oneShotBackend(b)
	var buf bytes.Buffer
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		roundTrip(b, backend, &buf)
	}
	reportCPU(b, start)
}

func BenchmarkConnectionRelay(b *testing.B) {
	r := benchRelay(b, oneShotBackend(b))
	addr := r.Addr().String()
	var buf bytes.Buffer
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		roundTrip(b, addr, &buf)
	}
	reportCPU(b, start)
	if st := r.Status(); st.Current == nil || st.Current.Total < uint64(b.N) {
		b.Fatalf("relay status %+v: fewer connections than the %d made", st, b.N)
	}
}

// TestGoroutinesPerConnection: an open connection through the relay holds
// two goroutines (one per direction), and none is left once it closed.
func TestGoroutinesPerConnection(t *testing.T) {
	backendGot := make(chan struct{}, 64)
	hold := make(chan struct{})
	backend := rawBackend(t, func(c *net.TCPConn) {
		backendGot <- struct{}{}
		<-hold
	})
	r := startRelay(t, Config{})
	r.set(t, "hold", backend)
	before := runtime.NumGoroutine()
	const n = 20
	var conns []*net.TCPConn
	for range n {
		conns = append(conns, dialRelay(t, r))
	}
	for range n {
		select {
		case <-backendGot:
		case <-time.After(10 * time.Second):
			t.Fatal("backend never got every connection")
		}
	}
	// Each connection here also costs the test's backend one goroutine. The
	// backend accepts before the relay has started its copies: no event
	// says they run, so a short poll until the count settles.
	perConn := func() float64 { return float64(runtime.NumGoroutine()-before-n) / n }
	for deadline := time.Now().Add(5 * time.Second); perConn() < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("relay goroutines per open connection: %.2f", perConn())
	if got := perConn(); got != 2 {
		t.Errorf("relay goroutines per open connection: %.2f, want 2 (one per direction)", got)
	}
	close(hold)
	for _, c := range conns {
		_ = c.Close()
	}
	r.set(t, "other", closedAddr(t))
	if res, err := r.ctl.WaitDrained(t.Context(), "hold", 5*time.Second); err != nil || !res.Drained {
		t.Fatalf("wait-drained after closing every connection: %+v, %v", res, err)
	}
}
