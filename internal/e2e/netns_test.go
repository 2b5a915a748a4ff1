package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread moved into the network namespace of process
// pid (a container's main process), so the sockets fn opens are that
// container's: its source address, its routes, its networks. The thread is
// never unlocked, so it ends with fn and nothing else runs in the
// container's namespace.
func inNetns(t *testing.T, pid int, fn func()) {
	t.Helper()
	if err := runInNetns(pid, fn); err != nil {
		t.Fatal(err)
	}
}

// runInNetns is inNetns for a goroutine other than the test's.
func runInNetns(pid int, fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering the network namespace of pid %d: %w", pid, err)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// dialFromContainer tries a TCP connect to addr from the container whose
// main process is pid, bounded by timeout, and returns its error.
func dialFromContainer(t *testing.T, pid int, addr string, timeout time.Duration) error {
	t.Helper()
	var err error
	inNetns(t, pid, func() {
		var c net.Conn
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		var d net.Dialer
		if c, err = d.DialContext(ctx, "tcp", addr); err == nil {
			_ = c.Close()
		}
	})
	return err
}
