package relay

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// Target is one app container the relay can send connections to. Name is
// for humans (the container name); Addrs are "host:port" dialed in order,
// typically the container IP first and then a DNS alias that still resolves
// if the IP changed after a daemon restart.
type Target struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

// Validate reports whether t names a target the relay can dial.
func (t Target) Validate() error {
	if t.Name == "" {
		return errors.New("target name is empty")
	}
	if len(t.Addrs) == 0 {
		return fmt.Errorf("target %s: no addrs", t.Name)
	}
	for _, a := range t.Addrs {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("target %s: addr %q: %w", t.Name, a, err)
		}
		if port == "" {
			return fmt.Errorf("target %s: addr %q: missing port", t.Name, a)
		}
	}
	return nil
}

// Equal reports whether t and o have the same Name and the same Addrs in the
// same order; setting a target equal to the current one is a no-op.
func (t Target) Equal(o Target) bool {
	return t.Name == o.Name && slices.Equal(t.Addrs, o.Addrs)
}

func (t Target) clone() Target {
	return Target{Name: t.Name, Addrs: slices.Clone(t.Addrs)}
}

// TargetStatus is a target with its connection counts. Active counts the
// connections being dialed or spliced to it right now; Total counts every
// connection that was established to it. Since is when the target became
// current (for the current target) or when it started draining.
type TargetStatus struct {
	Target
	Active int       `json:"active"`
	Total  uint64    `json:"total"`
	Since  time.Time `json:"since"`
	// DialErrors counts the dials to the target that failed (each addr
	// tried counts once): a bake or canary watches it rise.
	DialErrors uint64 `json:"dial_errors,omitempty"`
	// Resets counts the established connections the target ended with a
	// reset (or that timed out on its side) while they were relayed; the
	// client's own resets are not counted. A bake or canary watches it
	// rise: an app can pass its health check and still break connections.
	Resets uint64 `json:"resets,omitempty"`
	// Forgotten is set on a draining target that was forgotten but still
	// has open connections; it is no longer offered as a dial fallback.
	Forgotten bool `json:"forgotten,omitempty"`
}

// Status is the relay's view of its targets. Generation increments on every
// switch of the current target. During a canary (op split) Canary gets
// CanaryPercent of the new connections and Current the rest.
type Status struct {
	Generation    int            `json:"generation"`
	Current       *TargetStatus  `json:"current"`
	Canary        *TargetStatus  `json:"canary,omitempty"`
	CanaryPercent int            `json:"canary_percent,omitempty"`
	Draining      []TargetStatus `json:"draining"`
}

// WaitResult is the answer to wait-drained: whether the draining target
// reached zero active connections before the timeout, and the status then.
type WaitResult struct {
	Drained bool `json:"drained"`
	// Waited is how many connections the target had open when the wait
	// began, and Open how many it still had when the wait ended: those are
	// cut when the container stops. Long-lived connections (WebSocket,
	// server-sent events, streams) are what usually outlasts a drain.
	Waited int `json:"waited"`
	Open   int `json:"open"`
	Status
}
