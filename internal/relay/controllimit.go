package relay

import (
	"net"
	"sync"
	"time"
)

// Limits on the control listeners. The TCP control port is reachable from
// every container on the relay's networks, and nothing is known about a
// connection before its first line shows the token, so an unauthenticated
// connection must cost little and not for long, and a flood of them must not
// keep baton's own calls out:
//
//   - a request line is at most maxRequestLine bytes;
//   - an unauthenticated connection must deliver its first whole line within
//     FirstLine of being accepted, an authenticated one each next line within
//     Idle;
//   - at most PerSource unauthenticated connections per source address and
//     Pending in all are served; more are closed at accept. Per source,
//     because baton calls from the host's address on the network, which no
//     container has: a flood from any number of a service's containers fills
//     their own slots, never baton's;
//   - a connection whose first line carries the token no longer counts as
//     unauthenticated; at most Authed such connections are served at once
//     (baton uses one per service being deployed).
//
// The unix socket (reached with docker exec, owner-only) counts every
// connection as authenticated, under its own limiter, so no TCP flood can
// reach it either.
type ControlLimits struct {
	FirstLine time.Duration
	Idle      time.Duration
	PerSource int
	Pending   int
	Authed    int
}

const maxRequestLine = 4 << 10

// DefaultControlLimits are the limits a relay uses unless told otherwise.
var DefaultControlLimits = ControlLimits{
	FirstLine: 5 * time.Second,
	Idle:      2 * time.Minute,
	PerSource: 4,
	Pending:   64,
	Authed:    16,
}

func (l ControlLimits) withDefaults() ControlLimits {
	d := DefaultControlLimits
	if l.FirstLine <= 0 {
		l.FirstLine = d.FirstLine
	}
	if l.Idle <= 0 {
		l.Idle = d.Idle
	}
	if l.PerSource <= 0 {
		l.PerSource = d.PerSource
	}
	if l.Pending <= 0 {
		l.Pending = d.Pending
	}
	if l.Authed <= 0 {
		l.Authed = d.Authed
	}
	return l
}

// connLimiter counts one listener's control connections.
type connLimiter struct {
	lim ControlLimits

	mu      sync.Mutex
	pending map[string]int // unauthenticated connections by source address
	total   int            // sum of pending
	authed  int
	refused int // connections closed at accept, for tests and logs
}

func newConnLimiter(l ControlLimits) *connLimiter {
	return &connLimiter{lim: l.withDefaults(), pending: map[string]int{}}
}

// admit counts a new connection from src, unauthenticated or (on the unix
// socket) already authenticated, and reports whether it may be served.
func (l *connLimiter) admit(src string, authed bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case authed && l.authed < l.lim.Authed:
		l.authed++
		return true
	case !authed && l.pending[src] < l.lim.PerSource && l.total < l.lim.Pending:
		l.pending[src]++
		l.total++
		return true
	}
	l.refused++
	return false
}

// promote moves a connection from src that has shown the token from the
// unauthenticated count to the authenticated one; false if that is full.
func (l *connLimiter) promote(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.authed >= l.lim.Authed {
		return false
	}
	l.dropPendingLocked(src)
	l.authed++
	return true
}

// release uncounts a connection that ends.
func (l *connLimiter) release(src string, authed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if authed {
		l.authed--
		return
	}
	l.dropPendingLocked(src)
}

func (l *connLimiter) dropPendingLocked(src string) {
	if l.pending[src] <= 1 {
		delete(l.pending, src)
	} else {
		l.pending[src]--
	}
	l.total--
}

// counts returns the pending and authenticated counts and the number refused.
func (l *connLimiter) counts() (pending, authed, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.authed, l.refused
}

// sourceOf is the address a connection is counted under: the peer's IP
// for TCP (its port changes with every connection), one bucket for the
// unix socket.
func sourceOf(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return "unix"
}
