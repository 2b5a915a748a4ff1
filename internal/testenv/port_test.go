package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestFreePortReservesOutsideTheEphemeralRange(t *testing.T) {
	dir := filepath.Join(os.TempDir(), "baton-testenv-ports-"+strconv.Itoa(os.Getuid()))
	var held []int
	t.Run("hold", func(t *testing.T) {
		seen := map[int]bool{}
		for range 20 {
			p := FreePort(t)
			if p < portLow || p >= ephemeralRangeStart() || seen[p] {
				t.Fatalf("FreePort = %d: outside %d-%d or handed out twice", p, portLow, ephemeralRangeStart()-1)
			}
			seen[p] = true
			held = append(held, p)
			// Held: another process (or this one, through another open
			// file) cannot reserve it.
			if _, ok, err := lockPort(dir, p); err != nil || ok {
				t.Fatalf("port %d reserved twice (ok %v, err %v)", p, ok, err)
			}
			// And free: the test can bind it.
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				t.Fatalf("port %d from FreePort: %v", p, err)
			}
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
	// The subtest's end released them.
	for _, p := range held {
		unlock, ok, err := lockPort(dir, p)
		if err != nil || !ok {
			t.Fatalf("port %d still reserved after its test ended (ok %v, err %v)", p, ok, err)
		}
		unlock()
	}
}
