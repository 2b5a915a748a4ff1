package relay

import (
	"errors"
	"io"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// splice copies both directions between client and backend until both have
// ended, then closes both. A clean end of one direction (EOF) is passed on
// as a half-close (CloseWrite) and the other direction keeps flowing, so a
// client that sends its request and shuts down its write side still gets
// the reply. An error in either direction aborts both: the connection is
// broken and the other copy would otherwise block forever.
//
// backendReset reports whether the connection broke because the backend
// ended it abnormally (a reset, or a timeout) rather than the client. The
// copy's error cannot tell: splice(2) reports either socket's failure as
// the same "readfrom" error. So at the first error, before closing
// anything, the backend socket's TCP state is read: the kernel moves it to
// CLOSE on a reset from the backend, while a client's reset leaves it
// established (or closing in order).
func splice(client, backend *net.TCPConn) (upErr, downErr error, backendReset bool) {
	var once sync.Once
	abort := func(failed bool) {
		once.Do(func() {
			if failed {
				backendReset = tcpReset(backend)
			}
			_ = client.Close()
			_ = backend.Close()
		})
	}
	up := make(chan error, 1)
	go func() {
		err := pipe(backend, client)
		if err != nil {
			abort(!isClosedErr(err))
		}
		up <- err
	}()
	downErr = pipe(client, backend)
	if downErr != nil {
		abort(!isClosedErr(downErr))
	}
	upErr = <-up
	abort(false)
	return upErr, downErr, backendReset
}

// tcpReset reports whether c's socket was closed by the kernel rather than
// by us: a reset from the peer (or a retransmission or keep-alive timeout)
// moves it to TCP_CLOSE while we still hold it open. Until both sides have
// sent their FIN, no orderly end reaches that state.
func tcpReset(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var state uint8
	if err := rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			state = info.State
		}
	}); err != nil {
		return false
	}
	return state == tcpStateClose
}

// tcpStateClose is TCP_CLOSE in linux/tcp_states.h.
const tcpStateClose = 7

// pipe copies src to dst until src's EOF, then half-closes dst.
// io.Copy between TCP connections uses splice(2) on Linux.
func pipe(dst, src *net.TCPConn) error {
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	return dst.CloseWrite()
}

// isClosedErr tells a copy stopped by our own abort from a real failure.
func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed)
}
