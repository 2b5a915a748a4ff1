package procnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		name, line    string
		local, remote string
		state         string
		bad           bool
	}{
		{name: "ipv4", line: "   1: 0100007F:1F90 0200A8C0:D431 01 00000000:00000000 00:00000000 00000000 0 0 1 1 0",
			local: "127.0.0.1:8080", remote: "192.168.0.2:54321", state: "01"},
		{name: "ipv4-mapped in tcp6", line: "   0: 0000000000000000FFFF00000500120A:1F90 0000000000000000FFFF00000100120A:C350 01 00000000:00000000 00:00000000 00000000 0 0 1 1 0",
			local: "10.18.0.5:8080", remote: "10.18.0.1:50000", state: "01"},
		{name: "ipv6", line: "   0: 000080FE00000000FF030201050403FE:0050 00000000000000000000000001000000:A000 06 0 0 0 0 0",
			local: "[fe80::102:3ff:fe03:405]:80", remote: "[::1]:40960", state: "06"},
		{name: "header", line: "  sl  local_address rem_address   st tx_queue", bad: true},
		{name: "short", line: "0: 0100007F:1F90", bad: true},
		{name: "odd address", line: "0: 0100007:1F90 0200A8C0:D431 01", bad: true},
		{name: "bad port", line: "0: 0100007F:1F9G0 0200A8C0:D431 01", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st, err := ParseLine(tc.line)
			if tc.bad {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", c)
				}
				return
			}
			if err != nil || c.Local.String() != tc.local || c.Remote.String() != tc.remote || st != tc.state {
				t.Fatalf("got %s -> %s state %q (%v); want %s -> %s state %s", c.Local, c.Remote, st, err, tc.local, tc.remote, tc.state)
			}
		})
	}
}

// A connection to a dual-stack listener (Go's default, and nginx's and
// Node's on "::") is in tcp6, its IPv4 peer mapped; it counts as that IPv4
// address. Here our own process holds such a connection.
func TestCountEstablishedDualStack(t *testing.T) {
	ln, err := net.Listen("tcp", ":0") // dual stack: an AF_INET6 socket
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	loop := netip.MustParseAddr("127.0.0.1")
	toPort := func(c Conn) bool { return c.Local.Port() == port && c.Remote.Addr() == loop }
	if n, ok := CountEstablished("/proc", os.Getpid(), toPort); !ok || n != 0 {
		t.Fatalf("before any connection: %d (ok %v)", n, ok)
	}
	c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The server's side is where the test means it: in tcp6, mapped.
	b, err := os.ReadFile("/proc/self/net/tcp6")
	if err != nil || !strings.Contains(string(b), fmt.Sprintf("0000000000000000FFFF00000100007F:%04X", port)) {
		t.Fatalf("the listener's connection is not in tcp6 as a mapped address (%v):\n%s", err, b)
	}
	if n, ok := CountEstablished("/proc", os.Getpid(), toPort); !ok || n != 1 {
		t.Fatalf("with one connection to the dual-stack listener: %d (ok %v), want 1", n, ok)
	}
	if n, _ := CountEstablished("/proc", os.Getpid(), nil); n < 2 {
		t.Fatalf("all established connections: %d, want at least both ends of ours", n)
	}
	if _, ok := CountEstablished("/proc", 0, nil); ok {
		t.Fatal("pid 0: counted, want unreadable")
	}
	if _, ok := CountEstablished(t.TempDir(), 1, nil); ok {
		t.Fatal("a proc with no tables: counted, want unreadable")
	}
}

// A table that stops at a line it cannot read still counts what it read
// before and after: one odd line does not hide the rest.
func TestCountEstablishedFiles(t *testing.T) {
	proc := t.TempDir()
	dir := filepath.Join(proc, "7", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tcp := "  sl  local_address rem_address   st\n" +
		"   0: 0500120A:1F90 0100120A:C350 01 0\n" + // established, counted
		"   1: 0500120A:1F90 0100120A:C351 06 0\n" + // TIME_WAIT
		"   2: garbage\n" +
		"   3: 0500120A:1F90 0200120A:C352 01 0\n" // another peer
	tcp6 := "  sl  local_address remote_address st\n" +
		"   0: 0000000000000000FFFF00000500120A:1F90 0000000000000000FFFF00000100120A:C353 01 0\n"
	for name, text := range map[string]string{"tcp": tcp, "tcp6": tcp6} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	from := netip.MustParseAddr("10.18.0.1")
	n, ok := CountEstablished(proc, 7, func(c Conn) bool { return c.Remote.Addr() == from && c.Local.Port() == 8080 })
	if !ok || n != 2 {
		t.Fatalf("from %s on 8080: %d (ok %v), want 2 (one in each table)", from, n, ok)
	}
	if err := os.Remove(filepath.Join(dir, "tcp6")); err != nil {
		t.Fatal(err)
	}
	if n, ok := CountEstablished(proc, 7, nil); !ok || n != 2 {
		t.Fatalf("tcp alone: %d (ok %v), want 2", n, ok)
	}
}
