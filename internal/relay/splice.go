package relay

import (
	"errors"
	"io"
	"net"
	"sync"
)

// splice copies both directions between client and backend until both have
// ended, then closes both. A clean end of one direction (EOF) is passed on
// as a half-close (CloseWrite) and the other direction keeps flowing, so a
// client that sends its request and shuts down its write side still gets
// the reply. An error in either direction aborts both: the connection is
// broken and the other copy would otherwise block forever.
func splice(client, backend *net.TCPConn) (upErr, downErr error) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			_ = client.Close()
			_ = backend.Close()
		})
	}
	up := make(chan error, 1)
	go func() {
		err := pipe(backend, client)
		if err != nil {
			abort()
		}
		up <- err
	}()
	downErr = pipe(client, backend)
	if downErr != nil {
		abort()
	}
	upErr = <-up
	abort()
	return upErr, downErr
}

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
