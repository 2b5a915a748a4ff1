package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

const (
	backoffMin = 25 * time.Millisecond
	backoffMax = 500 * time.Millisecond
	keepAlive  = 15 * time.Second
)

// errNoTarget is the dial failure when no target has been set.
var errNoTarget = errors.New("no target set")

// dialBackend connects to the current target, falling back to its other
// addrs and then to draining targets not forgotten (their containers are
// still up during a drain), and retries with backoff until DialDeadline.
// The current target is read again on every round and a switch cuts the
// backoff short. Nothing has been read from the client, so every retry is
// safe. The returned backend has the connection counted against it; the
// caller releases it.
func (r *Relay) dialBackend(ctx context.Context, client net.Addr) (*backend, *net.TCPConn, error) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DialDeadline)
	defer cancel()

	wait := backoffMin
	for attempt := 1; ; attempt++ {
		cands, changed := r.st.candidates()
		lastErr := errNoTarget
		for _, b := range cands {
			if !r.st.acquire(b) {
				continue
			}
			conn, err := r.dialTarget(dctx, b.target, client, attempt)
			if err == nil {
				r.st.established(b)
				if attempt > 1 || b != cands[0] {
					r.log.Debug("dialed after retry", "target", b.target.Name, "client", client.String(), "attempt", attempt, "waited", time.Since(start))
				}
				return b, conn, nil
			}
			if ctx.Err() == nil { // not the relay shutting down
				r.st.dialFailed(b)
			}
			r.st.release(b)
			lastErr = err
			if dctx.Err() != nil {
				break
			}
		}
		if len(cands) == 0 && attempt == 1 {
			r.log.Debug("no target set; connection waits for one", "client", client.String())
		}

		// With no target at all there is nothing to retry: wait for a set.
		backoff := wait
		if len(cands) == 0 {
			backoff = r.cfg.DialDeadline
		}
		if !waitRetry(dctx, backoff, changed) {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("dial abandoned, relay shutting down: %w", ctx.Err())
			}
			return nil, nil, fmt.Errorf("no backend reachable within %s (%d rounds): %w", r.cfg.DialDeadline, attempt, lastErr)
		}
		wait = min(2*wait, backoffMax)
	}
}

// dialTarget tries t's addrs in order, each for at most DialTimeout.
func (r *Relay) dialTarget(ctx context.Context, t Target, client net.Addr, attempt int) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: r.cfg.DialTimeout, KeepAlive: keepAlive}
	var lastErr error
	for _, addr := range t.Addrs {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			tc, ok := c.(*net.TCPConn)
			if !ok {
				_ = c.Close()
				return nil, fmt.Errorf("target %s: addr %s: not a tcp connection", t.Name, addr)
			}
			return tc, nil
		}
		lastErr = fmt.Errorf("target %s: %w", t.Name, err)
		r.log.Debug("dial failed; trying next", "target", t.Name, "addr", addr, "client", client.String(), "attempt", attempt, "error", err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// waitRetry waits for the backoff to pass or the target to change. It
// returns false when ctx ends first.
func waitRetry(ctx context.Context, backoff time.Duration, changed <-chan struct{}) bool {
	t := time.NewTimer(backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-changed:
		return true
	case <-ctx.Done():
		return false
	}
}
