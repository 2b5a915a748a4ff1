package relay

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

const limitToken = "0123456789abcdef0123456789abcdef"

// startLimitedRelay starts a relay with a TCP control port and limits.
func startLimitedRelay(t *testing.T, lim ControlLimits) (*testRelay, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := startRelay(t, Config{ControlTCP: addr, ControlToken: limitToken, ControlLimits: lim})
	return tr, addr
}

// dialFrom connects to addr from a given loopback source address
// (127.0.0.0/8 is all loopback on Linux), so a test can be several peers.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// statusOver sends one status request with the token on c and returns the
// reply line.
func statusOver(c net.Conn, rd *bufio.Reader) (map[string]any, error) {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, `{"token":"`+limitToken+`","op":"status"}`+"\n"); err != nil {
		return nil, err
	}
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, err
	}
	if e, ok := m["error"]; ok {
		return m, errors.New(e.(string))
	}
	return m, nil
}

// closedSoon reports whether the relay closes c within d, reading nothing
// but an optional reply.
func closedSoon(c net.Conn, d time.Duration) (reply string, closed bool) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), false
	}
	return string(b), true
}

// A request line longer than the limit is refused with a bad_request reply
// and the connection closed; one under it is served (positive control).
func TestControlLineLimit(t *testing.T) {
	tr, addr := startLimitedRelay(t, ControlLimits{})
	backend := startHTTPBackend(t, "A")

	// Positive control: a set whose line is long, but under the limit.
	long := Target{Name: "A", Addrs: []string{backend.addr}}
	for len(long.Addrs) < 90 {
		long.Addrs = append(long.Addrs, "padding-host-name-for-a-long-line:8080")
	}
	c, err := DialTCP(t.Context(), addr, limitToken)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := json.Marshal(request{Token: limitToken, Op: opSet, Target: &long})
	if len(b) < 3000 || len(b) > maxRequestLine {
		t.Fatalf("test line is %d bytes; want between 3000 and %d", len(b), maxRequestLine)
	}
	if _, err := c.Set(t.Context(), long); err != nil {
		t.Fatalf("set with a %d-byte line: %v", len(b), err)
	}

	// Over the limit, no newline ever: refused at the limit, not buffered.
	raw := dialFrom(t, "127.0.0.1", addr)
	if _, err := raw.Write([]byte(`{"token":"` + limitToken + `","op":"status","name":"` + strings.Repeat("x", 2*maxRequestLine))); err != nil {
		t.Fatal(err)
	}
	reply, closed := closedSoon(raw, 3*time.Second)
	if !closed || !strings.Contains(reply, "longer than 4096 bytes") || !strings.Contains(reply, codeBadRequest) {
		t.Fatalf("over-long line: closed=%v reply %q; want a bad_request reply and a close", closed, reply)
	}
	if st := tr.status(t); st.Current == nil || st.Current.Name != "A" {
		t.Fatalf("status after the refused line: %+v", st)
	}
}

// An unauthenticated connection that sends no whole line is closed at the
// first-line deadline; an authenticated one may idle longer, and one closed
// for idling is reopened by the client transparently.
func TestControlReadDeadlines(t *testing.T) {
	_, addr := startLimitedRelay(t, ControlLimits{FirstLine: 300 * time.Millisecond, Idle: 1500 * time.Millisecond})

	silent := dialFrom(t, "127.0.0.1", addr)
	if _, err := silent.Write([]byte(`{"token":"` + limitToken)); err != nil { // half a line
		t.Fatal(err)
	}
	start := time.Now()
	if _, closed := closedSoon(silent, 3*time.Second); !closed {
		t.Fatal("an unauthenticated connection without a whole line was not closed within 3s")
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
		t.Fatalf("closed after %v; want about the 300ms first-line deadline", took)
	}

	// Positive control: authenticated, then idle past the first-line
	// deadline but within Idle: the same connection still answers.
	auth := dialFrom(t, "127.0.0.1", addr)
	rd := bufio.NewReader(auth)
	if _, err := statusOver(auth, rd); err != nil {
		t.Fatalf("status with the token: %v", err)
	}
	time.Sleep(600 * time.Millisecond)
	if _, err := statusOver(auth, rd); err != nil {
		t.Fatalf("authenticated connection idle 600ms (< Idle): %v", err)
	}
	// Past Idle it is closed...
	if _, closed := closedSoon(auth, 3*time.Second); !closed {
		t.Fatal("an authenticated connection idle past Idle was not closed")
	}

	// ...and the Client, whose kept connection the relay closed, sends its
	// next request on a new one.
	c, err := DialTCP(t.Context(), addr, limitToken)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if _, err := c.Status(t.Context()); err != nil {
		t.Fatalf("status after the relay closed the idle connection: %v", err)
	}
}

// Unauthenticated connections are capped per source and in all; excess ones
// are closed at once. Another source, an authenticated connection and the
// unix socket still get through while the cap is full (positive controls).
func TestControlConnectionCaps(t *testing.T) {
	tr, addr := startLimitedRelay(t, ControlLimits{PerSource: 3, Pending: 5, Authed: 2, FirstLine: time.Minute})

	// An attacker at 127.0.0.1 fills its 3 slots with silent connections.
	var held []net.Conn
	for range 3 {
		c := dialFrom(t, "127.0.0.1", addr)
		held = append(held, c)
	}
	waitCounts(t, tr.Relay, 3, 0)
	extra := dialFrom(t, "127.0.0.1", addr)
	if _, closed := closedSoon(extra, 2*time.Second); !closed {
		t.Fatal("a 4th unauthenticated connection from one source was not closed")
	}
	for _, c := range held { // the held ones are still open
		if _, closed := closedSoon(c, 50*time.Millisecond); closed {
			t.Fatal("a held connection within the cap was closed")
		}
	}

	// Another source (baton's address) still gets through and, once
	// authenticated, leaves the unauthenticated count.
	baton := dialFrom(t, "127.0.0.2", addr)
	if _, err := statusOver(baton, bufio.NewReader(baton)); err != nil {
		t.Fatalf("status from another source during the flood: %v", err)
	}
	waitCounts(t, tr.Relay, 3, 1)

	// The total cap: a second attacker fills the 2 remaining slots, and a
	// third source is refused.
	dialFrom(t, "127.0.0.3", addr)
	dialFrom(t, "127.0.0.3", addr)
	waitCounts(t, tr.Relay, 5, 1)
	if _, closed := closedSoon(dialFrom(t, "127.0.0.4", addr), 2*time.Second); !closed {
		t.Fatal("an unauthenticated connection over the total cap was not closed")
	}

	// The authenticated cap: 2 trusted connections at once, a third is told so.
	second := dialFrom(t, "127.0.0.2", addr)
	if _, err := statusOver(second, bufio.NewReader(second)); err == nil {
		t.Fatal("with the total cap full, a new connection was served")
	}
	for _, c := range held {
		c.Close()
	}
	waitCounts(t, tr.Relay, 2, 1)
	second = dialFrom(t, "127.0.0.2", addr)
	if _, err := statusOver(second, bufio.NewReader(second)); err != nil {
		t.Fatalf("second authenticated connection: %v", err)
	}
	third := dialFrom(t, "127.0.0.2", addr)
	if _, err := statusOver(third, bufio.NewReader(third)); err == nil || !strings.Contains(err.Error(), "too many control connections") {
		t.Fatalf("third authenticated connection: %v; want too many control connections", err)
	}

	// The unix socket has its own limiter: untouched by all this.
	if _, err := tr.ctl.Status(t.Context()); err != nil {
		t.Fatalf("status over the unix socket: %v", err)
	}
}

// A flood of connections each sending a large line without a newline: the
// relay reads at most maxRequestLine of each and serves at most the capped
// number, and a set from another source succeeds meanwhile.
func TestControlFloodInProcess(t *testing.T) {
	tr, addr := startLimitedRelay(t, ControlLimits{FirstLine: 2 * time.Second})
	backend := startHTTPBackend(t, "B")
	junk := []byte(`{"op":"status","name":"` + strings.Repeat("y", 256<<10))
	done := make(chan struct{})
	const floodConns = 300
	flooders := make(chan int, floodConns)
	for range floodConns {
		go func() {
			n := 0
			defer func() { flooders <- n }()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: time.Second}
			buf := make([]byte, 512)
			for {
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond): // a flood, not a busy loop on 2 cores
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				n++
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write(junk)
				for { // held until the relay closes it
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	// baton's source is not the flood's: it always gets through, on a
	// new connection each time.
	for range 20 {
		baton := dialFrom(t, "127.0.0.2", addr)
		if _, err := statusOver(baton, bufio.NewReader(baton)); err != nil {
			t.Fatalf("status from baton's address during the flood: %v", err)
		}
		baton.Close()
	}
	setter := dialFrom(t, "127.0.0.2", addr)
	b, _ := json.Marshal(request{Token: limitToken, Op: opSet, Target: &Target{Name: "B", Addrs: []string{backend.addr}}})
	if _, err := setter.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(setter).ReadString('\n'); err != nil || !strings.Contains(line, `"generation":1`) {
		t.Fatalf("set from baton's address during the flood: %q, %v", line, err)
	}
	pending, _, refused := tr.tcpLim.counts()
	close(done)
	if st := tr.status(t); st.Current == nil || st.Current.Name != "B" {
		t.Fatalf("status after the set: %+v", st)
	}
	total := 0
	for range floodConns {
		total += <-flooders
	}
	if pending > DefaultControlLimits.PerSource {
		t.Fatalf("%d unauthenticated connections from one source served at once; cap %d", pending, DefaultControlLimits.PerSource)
	}
	if refused == 0 || total < floodConns {
		t.Fatalf("flood of %d connections, %d refused: the flood did not run", total, refused)
	}
	t.Logf("flood: %d connections, %d closed at accept", total, refused)
}

// waitCounts waits for the TCP limiter to count pending and authed.
func waitCounts(t *testing.T, r *Relay, pending, authed int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		p, a, _ := r.tcpLim.counts()
		if p == pending && a == authed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("control connections: %d unauthenticated, %d authenticated; want %d, %d", p, a, pending, authed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
