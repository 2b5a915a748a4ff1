package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Ports FreePort hands out: below the kernel's ephemeral range, so no
// outgoing connection (the load generators make many) and no port the
// Docker engine or a program picks by binding port 0 can take one between
// FreePort and its use.
const (
	portLow  = 20000
	portHigh = 32767 // the default ephemeral range starts at 32768
)

// FreePort returns a TCP port on 127.0.0.1 for the test to bind or publish.
// The port is chosen below the ephemeral range, reserved across test
// processes (an flock held until the test ends: go test runs packages in
// parallel) and checked free on 127.0.0.1 just now. A program that did not
// use FreePort may still bind it meanwhile; prefer letting the program pick
// port 0 where it can.
func FreePort(t TB) int {
	t.Helper()
	port, release, err := reservePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	t.Cleanup(release)
	return port
}

func reservePort() (int, func(), error) {
	low, high := portLow, portHigh
	if ephemeralLow := ephemeralRangeStart(); ephemeralLow-1 < high {
		high = ephemeralLow - 1
	}
	if high-low < 1000 {
		return anyPort() // an unusual ephemeral range: fall back to the kernel's choice
	}
	// Empty files, never removed: unlinking a lock file would let two
	// processes lock two different files of the same name.
	dir := filepath.Join(os.TempDir(), "baton-testenv-ports-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, nil, err
	}
	for range 200 {
		port := low + rand.IntN(high-low+1)
		unlock, ok, err := lockPort(dir, port)
		if err != nil {
			return 0, nil, err
		}
		if !ok {
			continue // another test process holds it
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			unlock()
			continue // in use by something else
		}
		if err := ln.Close(); err != nil {
			unlock()
			return 0, nil, err
		}
		return port, unlock, nil
	}
	return 0, nil, fmt.Errorf("no free port in %d-%d after 200 tries", low, high)
}

// lockPort takes the cross-process reservation of port: an exclusive flock
// on a file named for it, which the kernel drops if the process dies.
func lockPort(dir string, port int) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("port lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		cerr := f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, cerr
		}
		return nil, false, fmt.Errorf("port lock %s: %w", f.Name(), errors.Join(err, cerr))
	}
	return func() { _ = f.Close() }, true, nil // closing drops the lock
}

// ephemeralRangeStart is the first port the kernel hands out for port 0
// and outgoing connections (32768 when it cannot be read).
func ephemeralRangeStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return n
}

// anyPort is the kernel's choice of a free port.
func anyPort() (int, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, func() {}, ln.Close()
}
