package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Relay is a running relay. Start returns one once its sockets are bound;
// Wait returns once it has shut down.
type Relay struct {
	cfg   Config
	log   *slog.Logger
	st    *state
	ln    net.Listener
	ctlLn net.Listener
	tcpLn net.Listener // control over TCP, with a token; nil if not configured

	ctlLim *connLimiter // the unix control socket's connections
	tcpLim *connLimiter // the TCP control port's

	// ctlCtx ends when shutdown begins: control requests stop.
	ctlCtx    context.Context
	ctlCancel context.CancelFunc
	// hardCtx ends when the shutdown grace has passed: open connections
	// and dials still waiting are closed.
	hardCtx    context.Context
	hardCancel context.CancelFunc

	loops sync.WaitGroup // accept loops and control connections
	conns sync.WaitGroup // relayed connections
	done  chan struct{}
}

// Serve runs a relay until ctx is cancelled, then stops accepting and waits
// up to ShutdownGrace for open connections before closing them.
func Serve(ctx context.Context, cfg Config) error {
	r, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	return r.Wait()
}

// Start loads the state file, binds the listener and the control socket and
// starts serving. The relay shuts down when ctx is cancelled.
func Start(ctx context.Context, cfg Config) (r *Relay, err error) {
	if cfg.Listener != nil {
		defer func() {
			if err != nil {
				_ = cfg.Listener.Close()
			}
		}()
	}
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r = &Relay{cfg: cfg, log: cfg.Logger, st: newState(), done: make(chan struct{})}

	if cfg.StateFile != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.StateFile), 0o755); err != nil {
			return nil, fmt.Errorf("state file %s: %w", cfg.StateFile, err)
		}
		saved, found, err := loadState(cfg.StateFile)
		switch {
		case err != nil:
			// Refusing to start would leave nobody to repair the file:
			// start without a target and let the next set overwrite it.
			r.log.Error("ignoring unreadable state file; waiting for a target to be set", "error", err)
		case found:
			r.st.restore(saved.Generation, saved.Target.clone(), saved.Since)
			r.log.Info("restored target from state file", "target", saved.Target.Name, "addrs", saved.Target.Addrs, "generation", saved.Generation)
		}
	}

	r.ln = cfg.Listener
	if r.ln == nil {
		lc := net.ListenConfig{KeepAlive: keepAlive}
		r.ln, err = lc.Listen(ctx, "tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("relay listen %s: %w", cfg.Listen, err)
		}
	}
	r.ctlLn, err = listenControl(cfg.ControlSocket)
	if err != nil {
		if cfg.Listener == nil {
			_ = r.ln.Close()
		}
		return nil, err
	}
	if cfg.ControlTCP != "" {
		if r.tcpLn, err = net.Listen("tcp", cfg.ControlTCP); err != nil {
			_ = r.ctlLn.Close()
			if cfg.Listener == nil {
				_ = r.ln.Close()
			}
			return nil, fmt.Errorf("relay control listen %s: %w", cfg.ControlTCP, err)
		}
	}

	// Connections get their own contexts: cancelling ctx must let open
	// connections finish, not cut them.
	r.ctlCtx, r.ctlCancel = context.WithCancel(context.WithoutCancel(ctx))
	r.hardCtx, r.hardCancel = context.WithCancel(context.WithoutCancel(ctx))

	r.log.Info("relay serving", "addr", r.ln.Addr().String(), "control", cfg.ControlSocket)
	r.loops.Go(r.acceptLoop)
	r.ctlLim, r.tcpLim = newConnLimiter(cfg.ControlLimits), newConnLimiter(cfg.ControlLimits)
	r.loops.Go(func() { r.controlLoop(r.ctlLn, "", r.ctlLim) })
	if r.tcpLn != nil {
		r.loops.Go(func() { r.controlLoop(r.tcpLn, cfg.ControlToken, r.tcpLim) })
	}
	go r.shutdownOn(ctx)
	return r, nil
}

// Addr is the address the relay accepts connections on.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// Status is the relay's current status, as the control op status returns.
func (r *Relay) Status() Status { return r.st.status() }

// Wait blocks until the relay has shut down and every goroutine it started
// has returned.
func (r *Relay) Wait() error {
	<-r.done
	return nil
}

func (r *Relay) shutdownOn(ctx context.Context) {
	<-ctx.Done()
	r.log.Info("relay stopping: no new connections")
	if err := r.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		r.log.Warn("close listener", "error", err)
	}
	if err := r.ctlLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		r.log.Warn("close control socket", "error", err)
	}
	if r.tcpLn != nil {
		if err := r.tcpLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			r.log.Warn("close control listener", "error", err)
		}
	}
	r.ctlCancel()
	// The accept loop must be gone before conns.Wait: it is what adds.
	r.loops.Wait()

	drained := make(chan struct{})
	go func() {
		r.conns.Wait()
		close(drained)
	}()
	grace := time.NewTimer(r.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-drained:
	case <-grace.C:
		st := r.st.status()
		r.log.Warn("shutdown grace passed; closing open connections", "grace", r.cfg.ShutdownGrace, "open", openCount(st))
		r.hardCancel()
		<-drained
	}
	r.hardCancel()
	r.log.Info("relay stopped")
	close(r.done)
}

func openCount(st Status) int {
	n := 0
	if st.Current != nil {
		n += st.Current.Active
	}
	for _, d := range st.Draining {
		n += d.Active
	}
	return n
}

func (r *Relay) acceptLoop() {
	var delay time.Duration
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.ctlCtx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			r.log.Warn("accept failed; retrying", "error", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.ctlCtx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			r.log.Warn("closing non-tcp connection", "client", c.RemoteAddr().String())
			_ = c.Close()
			continue
		}
		r.conns.Go(func() { r.handle(tc) })
	}
}

// handle serves one client connection: dial a backend, splice, count.
func (r *Relay) handle(client *net.TCPConn) {
	defer func() { _ = client.Close() }()
	peer := client.RemoteAddr()
	if r.cfg.Listener != nil {
		// A listener the relay made sets keep-alive on every accepted
		// connection already (ListenConfig.KeepAlive); one it was given may
		// not. Three setsockopt calls per connection saved where it can be.
		if err := setKeepAlive(client); err != nil {
			r.log.Debug("client keep-alive", "client", peer.String(), "error", err)
		}
	}

	// Until the backend is dialed, the end of hardCtx ends the dial itself
	// (dialBackend waits on it), and the deferred Close closes the client.
	b, backend, err := r.dialBackend(r.hardCtx, peer)
	if err != nil {
		if r.hardCtx.Err() != nil {
			r.log.Debug("closing client: relay stopped", "client", peer.String(), "error", err)
			return
		}
		r.log.Warn("giving up on connection: closing client", "client", peer.String(), "error", err)
		return
	}
	defer r.st.release(b)
	// One callback for both ends: each registration takes hardCtx's lock,
	// which every connection shares.
	stop := context.AfterFunc(r.hardCtx, func() {
		_ = client.Close()
		_ = backend.Close()
	})
	defer stop()

	upErr, downErr, reset := splice(client, backend)
	if reset {
		r.st.backendReset(b)
	}
	if !isClosedErr(upErr) || !isClosedErr(downErr) {
		r.log.Debug("connection ended with error", "client", peer.String(), "target", b.target.Name,
			"addr", backend.RemoteAddr().String(), "backend_reset", reset, "error", errors.Join(upErr, downErr))
	}
}

func setKeepAlive(c *net.TCPConn) error {
	if err := c.SetKeepAlive(true); err != nil {
		return err
	}
	return c.SetKeepAlivePeriod(keepAlive)
}
