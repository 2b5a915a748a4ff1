package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The control protocol: one JSON request per line on the unix socket, one
// JSON response per line back. Errors are {"error":"...","code":"..."}.
const (
	opStatus      = "status"
	opSet         = "set"
	opWaitDrained = "wait-drained"
	opForget      = "forget"
	opSplit       = "split"

	codeBadRequest    = "bad_request"
	codeUnknownTarget = "unknown_target"
	codeNotDraining   = "not_draining"
	codeUnavailable   = "unavailable"
	codeInternal      = "internal"
	codeUnauthorized  = "unauthorized"
)

// request is one control request.
type request struct {
	Token   string  `json:"token,omitempty"` // required on the TCP control listener
	Op      string  `json:"op"`
	Target  *Target `json:"target,omitempty"`
	Name    string  `json:"name,omitempty"`
	Timeout string  `json:"timeout,omitempty"`
	// Percent is split's share of new connections for Target, the canary.
	Percent *int `json:"percent,omitempty"`
}

// errorResponse is the reply to a request that failed.
type errorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// errBadRequest marks requests the relay cannot act on as sent.
var errBadRequest = errors.New("bad request")

// listenControl binds the control socket, replacing a stale socket file
// but never a live relay's socket or a file that is not a socket.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
	default:
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("control socket %s: another relay is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	// The socket redirects production traffic: owner only.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// controlLoop accepts control connections on ln. With a token (TCP), a
// connection is unauthenticated until its first line carries the token;
// without one (the owner-only unix socket) every connection is trusted.
func (r *Relay) controlLoop(ln net.Listener, token string, lim *connLimiter) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.ctlCtx.Err() != nil {
				return
			}
			r.log.Warn("control accept failed", "error", err)
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-t.C:
			case <-r.ctlCtx.Done():
				t.Stop()
				return
			}
			continue
		}
		src := sourceOf(c)
		if !lim.admit(src, token == "") {
			// Closed at once, unread: a flood costs the relay an accept
			// and a close per connection, and the slots of its own source.
			_ = c.Close()
			continue
		}
		r.loops.Go(func() { r.serveControl(c, token, lim, src) })
	}
}

// serveControl answers the requests of one control connection in order.
// With a token, the first request must carry it, within the limiter's
// first-line deadline; every later one must carry it too, and one that does
// not ends the connection.
func (r *Relay) serveControl(c net.Conn, token string, lim *connLimiter, src string) {
	authed := token == ""
	defer func() { lim.release(src, authed) }()
	stop := context.AfterFunc(r.ctlCtx, func() { _ = c.Close() })
	defer stop()
	defer func() { _ = c.Close() }()

	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 512), maxRequestLine)
	enc := json.NewEncoder(c)
	enc.SetEscapeHTML(false)
	for {
		// One deadline per line: an unauthenticated peer has little time
		// to show the token, a trusted one may idle between requests.
		wait := lim.lim.FirstLine
		if authed {
			wait = lim.lim.Idle
		}
		if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
			r.log.Debug("control read deadline", "error", err)
			return
		}
		if !sc.Scan() {
			break
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if token != "" && !hasToken(line, token) {
			r.log.Warn("control request without the right token", "remote", c.RemoteAddr().String())
			_ = enc.Encode(errorResponse{Error: "unauthorized: missing or wrong token", Code: codeUnauthorized})
			return
		}
		if !authed {
			if !lim.promote(src) {
				r.log.Warn("control connection refused: too many authenticated connections", "remote", c.RemoteAddr().String())
				_ = enc.Encode(errorResponse{Error: "unavailable: too many control connections", Code: codeUnavailable})
				return
			}
			authed = true
		}
		// A request may take long (wait-drained): no read deadline while
		// it runs.
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			return
		}
		if err := enc.Encode(r.handleRequest(r.ctlCtx, line)); err != nil {
			r.log.Debug("control reply", "error", err)
			return
		}
	}
	if err := sc.Err(); err != nil && r.ctlCtx.Err() == nil {
		if errors.Is(err, bufio.ErrTooLong) {
			if err := enc.Encode(errorResponse{Error: fmt.Sprintf("bad request: request line longer than %d bytes", maxRequestLine), Code: codeBadRequest}); err != nil {
				r.log.Debug("control reply", "error", err)
			}
			return
		}
		r.log.Debug("control read", "error", err, "remote", c.RemoteAddr().String())
	}
}

// hasToken reports whether a request line carries token, compared in
// constant time.
func hasToken(line []byte, token string) bool {
	var req struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(line, &req) != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(req.Token), []byte(token)) == 1
}

// handleRequest decodes and runs one request and returns the response.
func (r *Relay) handleRequest(ctx context.Context, line []byte) any {
	resp, err := r.runRequest(ctx, line)
	if err != nil {
		return errorResponse{Error: err.Error(), Code: errorCode(err)}
	}
	return resp
}

func (r *Relay) runRequest(ctx context.Context, line []byte) (any, error) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%w: invalid json: %v", errBadRequest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: invalid json: more than one value on the line", errBadRequest)
	}
	switch req.Op {
	case "":
		return nil, fmt.Errorf("%w: missing op", errBadRequest)
	case opStatus:
		return r.st.status(), nil
	case opSet:
		if req.Target == nil {
			return nil, fmt.Errorf("%w: set: missing target", errBadRequest)
		}
		return r.set(*req.Target)
	case opWaitDrained:
		if req.Name == "" {
			return nil, fmt.Errorf("%w: wait-drained: missing name", errBadRequest)
		}
		if req.Timeout == "" {
			return nil, fmt.Errorf("%w: wait-drained: missing timeout", errBadRequest)
		}
		timeout, err := time.ParseDuration(req.Timeout)
		if err != nil || timeout < 0 {
			return nil, fmt.Errorf("%w: wait-drained: invalid timeout %q", errBadRequest, req.Timeout)
		}
		res, err := r.st.waitDrained(ctx, req.Name, timeout)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("wait-drained: relay shutting down: %w", err)
			}
			return nil, fmt.Errorf("wait-drained: %w", err)
		}
		return res, nil
	case opForget:
		if req.Name == "" {
			return nil, fmt.Errorf("%w: forget: missing name", errBadRequest)
		}
		st, err := r.st.forget(req.Name)
		if err != nil {
			return nil, fmt.Errorf("forget: %w", err)
		}
		r.log.Info("forgot draining target", "target", req.Name)
		return st, nil
	case opSplit:
		if req.Target == nil || req.Percent == nil {
			return nil, fmt.Errorf("%w: split: needs target and percent", errBadRequest)
		}
		if p := *req.Percent; p < 0 || p > 99 {
			return nil, fmt.Errorf("%w: split: percent %d is not 0 (end the split) to 99", errBadRequest, p)
		}
		if err := req.Target.Validate(); err != nil {
			return nil, fmt.Errorf("%w: split: %v", errBadRequest, err)
		}
		st, err := r.st.split(req.Target.clone(), *req.Percent, time.Now())
		if err != nil {
			return nil, err
		}
		r.log.Info("split new connections", "target", req.Target.Name, "percent", *req.Percent)
		return st, nil
	default:
		return nil, fmt.Errorf("%w: unknown op %q", errBadRequest, req.Op)
	}
}

// set switches the current target, saving it first.
func (r *Relay) set(t Target) (Status, error) {
	if err := t.Validate(); err != nil {
		return Status{}, fmt.Errorf("%w: set: %v", errBadRequest, err)
	}
	persist := func(gen int, t Target, since time.Time) error {
		if r.cfg.StateFile == "" {
			return nil
		}
		return saveState(r.cfg.StateFile, savedState{Generation: gen, Target: t, Since: since})
	}
	st, prev, switched, err := r.st.set(t.clone(), time.Now(), persist)
	if err != nil {
		return Status{}, fmt.Errorf("set: target %s: %w", t.Name, err)
	}
	if switched {
		args := []any{"target", t.Name, "addrs", t.Addrs, "generation", st.Generation}
		if prev != nil {
			args = append(args, "previous", prev.Name)
		}
		r.log.Info("switched target", args...)
	}
	return st, nil
}

func errorCode(err error) string {
	switch {
	case errors.Is(err, errBadRequest):
		return codeBadRequest
	case errors.Is(err, ErrUnknownTarget):
		return codeUnknownTarget
	case errors.Is(err, ErrNotDraining):
		return codeNotDraining
	case errors.Is(err, context.Canceled):
		return codeUnavailable
	default:
		return codeInternal
	}
}
