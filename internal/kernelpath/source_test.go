package kernelpath

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// EstablishedFrom counts what a drain waits for: connections the kernel
// path carries to the container's port from its source address. An app
// listening dual-stack (Go's default, as the demo app does) holds them in
// tcp6 with the source mapped; counting tcp alone found none there, so a
// drain stopped the old container under nginx's kept connections.
func TestEstablishedFrom(t *testing.T) {
	proc := t.TempDir()
	dir := filepath.Join(proc, "42", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The container 10.18.0.5 serves on 8080 (1F90); the kernel path's
	// source is the gateway 10.18.0.1; 10.18.0.3 is the relay's dial.
	tcp := "  sl  local_address rem_address   st\n" +
		"   0: 00000000:1F90 00000000:0000 0A 0\n" + // the listener itself
		"   1: 0500120A:1F90 0300120A:C350 01 0\n" // the relay's
	tcp6 := "  sl  local_address remote_address st\n" +
		"   0: 0000000000000000FFFF00000500120A:1F90 0000000000000000FFFF00000100120A:C351 01 0\n" +
		"   1: 0000000000000000FFFF00000500120A:1F90 0000000000000000FFFF00000100120A:C352 01 0\n" +
		"   2: 0000000000000000FFFF00000500120A:1F90 0000000000000000FFFF00000100120A:C353 08 0\n" + // CLOSE_WAIT: nginx closed it
		"   3: 0000000000000000FFFF00000500120A:1F91 0000000000000000FFFF00000100120A:C354 01 0\n" // another port
	for name, text := range map[string]string{"tcp": tcp, "tcp6": tcp6} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gw := netip.MustParseAddr("10.18.0.1")
	if n, ok := EstablishedFrom(proc, 42, 8080, gw); !ok || n != 2 {
		t.Fatalf("from the gateway: %d (ok %v), want the 2 established in tcp6", n, ok)
	}
	if n, ok := EstablishedFrom(proc, 42, 8080, netip.MustParseAddr("10.18.0.3")); !ok || n != 1 {
		t.Fatalf("from the relay: %d (ok %v), want 1", n, ok)
	}
	for _, bad := range []struct {
		pid, port int
		from      netip.Addr
	}{{0, 8080, gw}, {42, 0, gw}, {42, 70000, gw}, {42, 8080, netip.MustParseAddr("::1")}, {43, 8080, gw}} {
		if _, ok := EstablishedFrom(proc, bad.pid, bad.port, bad.from); ok {
			t.Fatalf("pid %d port %d from %s: counted, want unreadable", bad.pid, bad.port, bad.from)
		}
	}
}
