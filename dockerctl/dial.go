package dockerctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// dialConnected is relay.DialConnected (dockerctl does not import the
// relay): the first byte `baton relay dial` writes once connected.
const dialConnected = 0

// DialContainer connects to addr, an address on a service's network, from
// where the engine's containers are: directly when the engine is local,
// else through container via (which must hold baton's binary, as a relay
// container does). Health probes, warm-up requests and relay control use
// it, so they work against an engine on another machine.
func (c *Client) DialContainer(ctx context.Context, via, network, addr string) (net.Conn, error) {
	if c.Endpoint.Local || c.Endpoint.Host == "" {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return c.DialVia(ctx, via, addr)
}

// DialVia connects to addr from inside container via: it runs `baton
// relay dial ADDR` there with docker exec and returns the exec's stream as
// the connection. The stream carries the process's stdout and stderr
// multiplexed (no TTY, which would mangle bytes), so it is unpacked here;
// the first stdout byte says the connect succeeded, and a failed one is
// reported with the process's stderr. One exec per connection: fine for
// probes, which open a fresh connection each, and for relay control, which
// keeps its connection.
func (c *Client) DialVia(ctx context.Context, via, addr string) (net.Conn, error) {
	argv := []string{SelfBinary, "relay", "dial", addr}
	fail := func(err error) (net.Conn, error) {
		return nil, fmt.Errorf("dial %s from container %s on %s: %w", addr, via, c.Endpoint, err)
	}
	created, err := c.ContainerExecCreate(ctx, via, container.ExecOptions{Cmd: argv, AttachStdin: true, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return fail(err)
	}
	hj, err := c.ContainerExecAttach(ctx, created.ID, container.ExecStartOptions{})
	if err != nil {
		return fail(err)
	}
	// stdcopy's frames -> pr (stdout) and stderr.
	pr, pw := io.Pipe()
	stderr := &lockedBuffer{}
	go func() {
		_, err := stdcopy.StdCopy(pw, stderr, hj.Reader)
		pw.CloseWithError(err)
	}()
	first := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := io.ReadFull(pr, b[:])
		if err == nil && b[0] != dialConnected {
			err = fmt.Errorf("unexpected first byte %d", b[0])
		}
		first <- err
	}()
	select {
	case err := <-first:
		if err != nil {
			hj.Close()
			msg := strings.TrimSpace(stderr.String())
			if msg == "" {
				msg = err.Error()
			}
			return fail(errors.New(msg))
		}
	case <-ctx.Done():
		hj.Close()
		return fail(ctx.Err())
	}
	// A net.Pipe gives the caller a conn with working deadlines (the
	// relay client and net/http set them) without putting them on the
	// exec stream, which a read deadline would break for good.
	mine, theirs := net.Pipe()
	go func() {
		_, _ = io.Copy(theirs, pr) // peer -> caller
		_ = theirs.Close()
	}()
	go func() {
		_, _ = io.Copy(hj.Conn, theirs) // caller -> peer
		_ = hj.CloseWrite()
		// The caller closed its end: nothing more to read either.
		hj.Close()
		_ = pr.Close()
	}()
	return &viaConn{Conn: mine, remote: viaAddr(via + "->" + addr)}, nil
}

// viaConn is the caller's end of a DialVia connection.
type viaConn struct {
	net.Conn
	remote viaAddr
}

func (v *viaConn) RemoteAddr() net.Addr { return v.remote }

type viaAddr string

func (viaAddr) Network() string  { return "docker-exec" }
func (a viaAddr) String() string { return string(a) }

// lockedBuffer is a bytes.Buffer written by stdcopy's goroutine and read
// by the dialer.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<10 {
		return len(p), nil // enough for an error line
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
