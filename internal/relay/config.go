package relay

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// Config configures a relay.
type Config struct {
	// Listen is the TCP address nginx connects to, e.g. ":8080".
	Listen string
	// Listener, if set, is used instead of listening on Listen (tests,
	// socket activation). It must yield *net.TCPConn. The relay closes it, also when
	// Start fails.
	Listener net.Listener
	// ControlSocket is the path of the unix socket baton controls the
	// relay through. A stale socket file left there is removed.
	ControlSocket string
	// ControlTCP, if set, is a TCP address the control protocol is also
	// served on, for a baton that can reach the relay's network: a call
	// costs a round trip instead of a docker exec. Every request on it must
	// carry ControlToken.
	ControlTCP   string
	ControlToken string
	// ControlLimits bound what control connections may cost (zero fields
	// take DefaultControlLimits).
	ControlLimits ControlLimits
	// StateFile keeps the current target across restarts. Empty disables
	// persistence.
	StateFile string
	// DialTimeout bounds one dial attempt to one addr (default 1s).
	DialTimeout time.Duration
	// DialDeadline bounds the time a connection keeps retrying its dial
	// or waiting for a first target (default 10s).
	DialDeadline time.Duration
	// ShutdownGrace bounds how long Serve waits for open connections after
	// its context is cancelled before closing them (default 10s).
	ShutdownGrace time.Duration
	// Logger receives the relay's logs (default slog.Default()).
	Logger *slog.Logger
}

const (
	defaultDialTimeout   = time.Second
	defaultDialDeadline  = 10 * time.Second
	defaultShutdownGrace = 10 * time.Second
)

func (c Config) withDefaults() (Config, error) {
	if c.Listen == "" && c.Listener == nil {
		return c, errors.New("relay config: listen address is required")
	}
	if c.ControlSocket == "" {
		return c, errors.New("relay config: control socket path is required")
	}
	if c.ControlTCP != "" && len(c.ControlToken) < 16 {
		return c, errors.New("relay config: a TCP control address needs a control token of at least 16 characters")
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.DialDeadline <= 0 {
		c.DialDeadline = defaultDialDeadline
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = defaultShutdownGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
