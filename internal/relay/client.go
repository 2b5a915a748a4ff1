package relay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// RemoteError is an error the relay answered a control request with.
type RemoteError struct {
	Code    string
	Message string
}

func (e *RemoteError) Error() string { return "relay: " + e.Message }

// Is lets callers test remote errors against ErrUnknownTarget and
// ErrNotDraining with errors.Is.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrUnknownTarget:
		return e.Code == codeUnknownTarget
	case ErrNotDraining:
		return e.Code == codeNotDraining
	}
	return false
}

// Client talks to a relay over its control socket. It is safe for
// concurrent use; requests are sent one at a time. A connection broken by
// an I/O error or a cancelled context is replaced on the next request.
type Client struct {
	network string // unix or tcp
	path    string // socket path or host:port
	token   string // sent with every request (TCP control)
	dialer  func(ctx context.Context, network, addr string) (net.Conn, error)

	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
}

// Dial connects to the relay's control socket at socketPath.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	return dial(ctx, &Client{network: "unix", path: socketPath})
}

// DialTCP connects to a relay's TCP control address; every request carries
// token.
func DialTCP(ctx context.Context, addr, token string) (*Client, error) {
	return dial(ctx, &Client{network: "tcp", path: addr, token: token})
}

// DialTCPWith is DialTCP with connections made by dialer, which may reach
// the relay from elsewhere (docker exec into its container, for an engine
// on another machine).
func DialTCPWith(ctx context.Context, dialer func(ctx context.Context, network, addr string) (net.Conn, error), addr, token string) (*Client, error) {
	return dial(ctx, &Client{network: "tcp", path: addr, token: token, dialer: dialer})
}

func dial(ctx context.Context, c *Client) (*Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.connectLocked(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) connectLocked(ctx context.Context) error {
	dialer := c.dialer
	if dialer == nil {
		var d net.Dialer
		dialer = d.DialContext
	}
	conn, err := dialer(ctx, c.network, c.path)
	if err != nil {
		return fmt.Errorf("relay control %s %s: %w", c.network, c.path, err)
	}
	c.conn = conn
	c.rd = bufio.NewReaderSize(conn, 64<<10)
	return nil
}

// Close closes the connection to the relay.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// Status returns the relay's targets and counts.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, request{Op: opStatus}, &st)
	return st, err
}

// Set makes t the current target; the previous one starts draining.
func (c *Client) Set(ctx context.Context, t Target) (Status, error) {
	var st Status
	err := c.do(ctx, request{Op: opSet, Target: &t}, &st)
	return st, err
}

// WaitDrained waits up to timeout for the draining target called name to
// have no active connection. Not being drained in time is not an error:
// WaitResult.Drained is false.
func (c *Client) WaitDrained(ctx context.Context, name string, timeout time.Duration) (WaitResult, error) {
	var res WaitResult
	err := c.do(ctx, request{Op: opWaitDrained, Name: name, Timeout: timeout.String()}, &res)
	return res, err
}

// Forget stops the relay offering the draining target called name as a
// dial fallback; it leaves the status once its connections have ended.
func (c *Client) Forget(ctx context.Context, name string) (Status, error) {
	var st Status
	err := c.do(ctx, request{Op: opForget, Name: name}, &st)
	return st, err
}

// do sends one request and decodes its response into out.
func (c *Client) do(ctx context.Context, req request, out any) error {
	line, err := c.roundTrip(ctx, req)
	if err != nil {
		return fmt.Errorf("relay %s: %w", req.Op, err)
	}
	var e errorResponse
	if err := json.Unmarshal(line, &e); err != nil {
		return fmt.Errorf("relay %s: decode response: %w", req.Op, err)
	}
	if e.Error != "" {
		return &RemoteError{Code: e.Code, Message: e.Error}
	}
	if err := json.Unmarshal(line, out); err != nil {
		return fmt.Errorf("relay %s: decode response: %w", req.Op, err)
	}
	return nil
}

func (c *Client) roundTrip(ctx context.Context, req request) ([]byte, error) {
	req.Token = c.token
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')

	c.mu.Lock()
	defer c.mu.Unlock()
	reused := c.conn != nil
	line, err := c.roundTripLocked(ctx, b)
	if err != nil && reused && ctx.Err() == nil && closedByPeer(err) {
		// The relay closes control connections idle for longer than its
		// limit (a deploy waits minutes for health between two calls):
		// the kept connection was gone before this request was read, and
		// every op is safe to send again.
		line, err = c.roundTripLocked(ctx, b)
	}
	return line, err
}

func (c *Client) roundTripLocked(ctx context.Context, b []byte) ([]byte, error) {
	if c.conn == nil {
		if err := c.connectLocked(ctx); err != nil {
			return nil, err
		}
	}
	conn := c.conn
	// A request that ends early leaves its response unread on the stream,
	// so the connection cannot be reused: drop it on any failure.
	fail := func(err error) ([]byte, error) {
		_ = conn.Close()
		c.conn = nil
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	dl, _ := ctx.Deadline()
	if err := conn.SetDeadline(dl); err != nil {
		return fail(err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(b); err != nil {
		return fail(err)
	}
	line, err := c.rd.ReadBytes('\n')
	if err != nil {
		if len(line) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // part of a reply: not a plain close
		}
		return fail(err)
	}
	if !stop() {
		// ctx ended as the reply arrived: the reply is whole, but the
		// conn's deadline is being forced into the past, so retire it.
		_ = conn.Close()
		c.conn = nil
	}
	return line, nil
}

// closedByPeer tells a connection the relay had closed before reading the
// request (EOF, reset, broken pipe) from other failures.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
