package deploy

import (
	"context"
	"fmt"
	"time"
)

// Endpoint is one app container as traffic sees it: reachable at IP:Port on
// its service's network, from the host, from the relay and from an nginx container.
type Endpoint struct {
	ID   string // full container ID
	Name string // container name, no leading slash
	IP   string // address on its service's network
	Port int    // the app's container port
	PID  int    // main process on the host, for reading its connection table
}

// Addr is IP:Port.
func (e Endpoint) Addr() string { return joinHostPort(e.IP, e.Port) }

// Traffic moves a service's traffic between containers. Implementations: the
// relay, an nginx upstream file plus reload, and none (the published port is
// handed over when the old container stops).
type Traffic interface {
	// Mode names the mechanism: relay, nginx or none.
	Mode() string
	// Ensure makes traffic reach cur, setting things up the first time
	// (relay container, upstream file) and repairing them after a reboot.
	// It is safe to call on every deploy.
	Ensure(ctx context.Context, cur Endpoint) error
	// Describe says where traffic goes now, for baton status.
	Describe(ctx context.Context) (string, error)
	// Switch sends new traffic to `to`; requests already on `from` finish there.
	Switch(ctx context.Context, from, to Endpoint) error
	// Drain waits until `from` has no traffic left, at most max, and says
	// how many connections it waited for and how many were still open at
	// max (the old container's stop cuts them).
	Drain(ctx context.Context, from Endpoint, max time.Duration) (DrainReport, error)
	// Finish tidies up once `old` is gone and `cur` serves alone.
	Finish(ctx context.Context, cur, old Endpoint) error
}

// TrafficFactory builds the Traffic for a service's settings.
type TrafficFactory func(ctx context.Context, svc Service, s Settings) (Traffic, error)

// TargetCounts are what the relay counted for one container: connections
// open now, established in all, dials that failed, and connections the
// container reset.
type TargetCounts struct {
	Active     int    `json:"active"`
	Total      uint64 `json:"total"`
	DialErrors uint64 `json:"dial_errors"`
	Resets     uint64 `json:"resets"`
}

// counter is a Traffic that counts per container (the relay); a bake's
// dial-error threshold needs one.
type counter interface {
	Counts(ctx context.Context, ep Endpoint) (TargetCounts, error)
}

// preparer is a Traffic that readies a new container for traffic while it
// warms up (the kernel path connects it to its service's kernel network),
// so that work leaves the deploy's path to its return. A failure only
// leaves the work to Finish, which does it anyway when it was not done.
type preparer interface {
	Prepare(ctx context.Context, next Endpoint) error
}

// splitter is a Traffic that can send a share of new connections to a
// canary (the relay): Switch(from, to) then promotes it, Switch(to, from)
// ends the split.
type splitter interface {
	Split(ctx context.Context, from, to Endpoint, percent int) error
}

// DrainReport is what a drain waited for. Waited counts the connections
// open on the old container when the drain began (requests in flight and
// long-lived connections: WebSocket, server-sent events, streams); Cut those
// still open when --drain ended, which the old container's stop closes.
// Counted is false when the traffic mode cannot count (none).
type DrainReport struct {
	Counted bool `json:"counted"`
	Waited  int  `json:"waited"`
	// KernelWaited is the part of Waited that the kernel path carried
	// (--kernel-path), counted in the old container's own table.
	KernelWaited int `json:"kernel_waited,omitempty"`
	// KernelUncounted says the kernel path's connections could not be
	// counted until the drain's end (a helper that failed every look):
	// Cut does not hold them.
	KernelUncounted bool          `json:"kernel_uncounted,omitempty"`
	Cut             int           `json:"cut"`
	Duration        time.Duration `json:"duration_ns"`
	// Signal is the signal sent to the old container when traffic moved
	// (--drain-signal), if any.
	Signal string `json:"signal,omitempty"`
	// DialErrors and Resets are the relay's counts for the drained
	// container over its whole time as a target, read when the drain
	// ended: after a revert they bound what the reverted container broke.
	DialErrors uint64 `json:"dial_errors,omitempty"`
	Resets     uint64 `json:"resets,omitempty"`
}

// dropKernelPath removes the kernel path of a service whose settings no
// longer ask for one (--kernel-path=false, its line gone from the
// configuration file, another way of reaching nginx): it would keep sending
// nginx's connections for the relay's old address to whichever container it
// named. A host where the rules cannot be read (baton not root, no
// iptables) holds none of baton's.
func (d *Deployer) dropKernelPath(ctx context.Context, svc Service, s Settings, note func(string)) error {
	if s.KernelPath || d.KernelRoutes == nil {
		return nil
	}
	nginx := s.NginxContainer
	if s.nginxByLabel {
		nginx = "" // baton enters no namespace a label names
	}
	has, err := d.KernelRoutes.Has(ctx, svc.Key, nginx)
	if err != nil && (d.Remote || d.NginxHere) {
		// The engine's host is reached through a helper there: that it
		// did not answer says nothing of its rules, and a DNAT left in
		// place would send connections to a container this deploy may
		// stop. Nothing has changed yet.
		return fmt.Errorf("looking for the kernel path of %s on the engine's host (kernel-path is off now): %w", svc.Name, err)
	}
	if err != nil {
		if d.Log != nil {
			d.Log.Debug("kernel path: not looked for", "service", svc.Key, "error", err)
		}
		return nil
	}
	if !has {
		return nil
	}
	if err := d.KernelRoutes.Remove(ctx, svc.Key, nginx); err != nil {
		return fmt.Errorf("removing the kernel path of %s (kernel-path is off now): %w", svc.Name, err)
	}
	note(fmt.Sprintf("removed the kernel path of %s: nginx's connections take the way its settings give", svc.Name))
	return nil
}
