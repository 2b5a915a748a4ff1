package traffic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/dockerctl"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/kernelpath"
)

// KernelRelay is the relay for an nginx on the host with the kernel path
// (--kernel-path): while no deploy runs, the kernel carries nginx's new
// connections for the relay's loopback address straight to the serving
// container, so no userland process copies a byte of them. Every verb of a
// deploy first takes that route away, so new connections reach the relay,
// which switches, splits, bakes, reverts and counts as always; the route
// comes back for the container that serves alone once the deploy is done.
// Connections the kernel already carries keep their container (conntrack)
// and are waited for by the drain.
type KernelRelay struct {
	*Relay
	table *kernelpath.Table
}

// errNotOnKernelNet says a container was never given the kernel path, so
// the kernel carries none of its connections.
var errNotOnKernelNet = errors.New("not on its service's kernel network")

// route is the kernel path to cur: from the relay's listen address to cur's
// address on its service's kernel network, leaving with that network's
// gateway. The kernel network carries nothing else, so no other flow to
// the container (the relay's dials and probes on the service's network, a
// published port's docker-proxy on the app's own) shares a 4-tuple with
// the kernel's (see kernelpath's package comment). attach connects cur to the
// kernel network first if it is not on it; without it, a container not on
// it yields errNotOnKernelNet.
func (k *KernelRelay) route(ctx context.Context, cur deploy.Endpoint, attach bool) (kernelpath.Route, error) {
	name := RelayName(k.svc.Key)
	c, err := k.eng.ContainerInspect(ctx, name)
	if err != nil {
		return kernelpath.Route{}, fmt.Errorf("inspecting relay container %s: %w", name, err)
	}
	listen := c.Config.Labels[LabelRelayListen]
	if !relayOnHost(c) || listen == "" {
		return kernelpath.Route{}, deploy.Classify(deploy.ErrInvalid, "relay %s publishes a port (made by an earlier baton), which the kernel path cannot take over; remove it (docker rm -f %s) and deploy again to recreate it (one nginx reload)", name, name)
	}
	la, err := netip.ParseAddrPort(listen)
	if err != nil {
		return kernelpath.Route{}, fmt.Errorf("relay %s listens on %q: %w", name, listen, err)
	}
	netName := dockerctl.KernelNetwork(k.svc.Key)
	if attach {
		if netName, err = k.eng.EnsureKernelNetwork(ctx, k.svc.Key); err != nil {
			return kernelpath.Route{}, err
		}
	}
	nw, err := k.eng.NetworkInspect(ctx, netName, network.InspectOptions{})
	if !attach && errdefs.IsNotFound(err) {
		return kernelpath.Route{}, fmt.Errorf("container %s: %w %s (there is none)", cur.Name, errNotOnKernelNet, netName)
	}
	if err != nil {
		return kernelpath.Route{}, fmt.Errorf("inspecting network %s: %w", netName, err)
	}
	if nw.Driver != "bridge" {
		// Another driver has no bridge of this host to route through.
		return kernelpath.Route{}, deploy.Classify(deploy.ErrUnsupported, "network %s has driver %s, not bridge, which the kernel path needs; remove it (docker network rm %s) and baton recreates it", netName, nw.Driver, netName)
	}
	bridge := nw.Options["com.docker.network.bridge.name"]
	if bridge == "" && len(nw.ID) >= 12 {
		bridge = "br-" + nw.ID[:12] // how Docker names a bridge network's interface
	}
	ip, err := k.kernelAddr(ctx, cur, netName, attach)
	if err != nil {
		return kernelpath.Route{}, err
	}
	src, err := kernelpath.PickSource(bridge, ip)
	if err != nil {
		return kernelpath.Route{}, err
	}
	return kernelpath.Route{Service: k.svc.Key, Listen: la, Target: netip.AddrPortFrom(ip, uint16(cur.Port)), Source: src, Bridge: bridge}, nil
}

// kernelAddr is cur's address on the kernel network netName, connecting it
// there first when attach is set. Joining an internal network publishes no
// port and routes nothing: the container only gains a link the host
// reaches.
func (k *KernelRelay) kernelAddr(ctx context.Context, cur deploy.Endpoint, netName string, attach bool) (netip.Addr, error) {
	ref := cur.ID
	if ref == "" {
		ref = cur.Name
	}
	var connectErr error
	for try := 0; ; try++ {
		c, err := k.eng.ContainerInspect(ctx, ref)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("inspecting container %s: %w", cur.Name, err)
		}
		if ep := c.NetworkSettings.Networks[netName]; ep != nil && ep.IPAddress != "" {
			ip, err := netip.ParseAddr(ep.IPAddress)
			if err != nil {
				return netip.Addr{}, fmt.Errorf("container %s has address %q on %s: %w", cur.Name, ep.IPAddress, netName, err)
			}
			return ip, nil
		}
		if !attach || try > 2 {
			if connectErr != nil {
				return netip.Addr{}, fmt.Errorf("attaching %s to %s, its service's kernel network: %w", cur.Name, netName, connectErr)
			}
			return netip.Addr{}, fmt.Errorf("container %s: %w %s", cur.Name, errNotOnKernelNet, netName)
		}
		if try > 0 {
			// "Already exists" for a container not on the network: an
			// endpoint of the container that had this name a moment
			// ago (finalize renames the new one to it), which the
			// engine drops shortly.
			select {
			case <-ctx.Done():
				return netip.Addr{}, ctx.Err()
			case <-time.After(time.Duration(try) * 500 * time.Millisecond):
			}
		}
		connectErr = k.eng.NetworkConnect(ctx, netName, ref, nil)
		if connectErr != nil && !dockerctl.AlreadyAttached(connectErr) {
			return netip.Addr{}, fmt.Errorf("attaching %s to %s, its service's kernel network: %w", cur.Name, netName, connectErr)
		}
	}
}

// kernelDialCheck is how long the check that the app answers on its kernel
// network address waits.
const kernelDialCheck = 2 * time.Second

// answers checks that the app accepts connections on addr, its address on
// the kernel network, which neither the relay nor the health probes use:
// an app listening on one interface only would pass the deploy and then
// refuse every connection the kernel carries. The check's connection is
// reset rather than closed, so the container keeps no TIME_WAIT on a tuple
// nginx's connections may use later.
func answers(ctx context.Context, addr netip.AddrPort) error {
	d := net.Dialer{Timeout: kernelDialCheck}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Errorf("the app does not answer on %s, its kernel network address (it must listen on all its interfaces, as on 0.0.0.0): %w", addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.Close()
}

// Ensure is the relay's Ensure, then the kernel path to cur.
func (k *KernelRelay) Ensure(ctx context.Context, cur deploy.Endpoint) error {
	if err := k.Relay.Ensure(ctx, cur); err != nil {
		return err
	}
	return k.routeTo(ctx, cur)
}

// routeTo gives the kernel path to cur. When that fails (iptables' lock
// not had in time, baton not root, the container's address gone), the
// relay, which already targets cur, carries the traffic: the route is
// taken away, so it cannot keep sending connections to a container that
// no longer serves, and the deploy or repair goes on, saying so. Only a
// route that can be neither set nor taken away is an error.
func (k *KernelRelay) routeTo(ctx context.Context, cur deploy.Endpoint) error {
	r, err := k.route(ctx, cur, true)
	if err == nil {
		err = answers(ctx, r.Target)
	}
	if err == nil {
		err = k.table.Route(ctx, r)
	}
	if err == nil {
		return nil
	}
	if berr := k.table.Bypass(ctx, k.svc.Key); berr != nil {
		return fmt.Errorf("kernel path of %s: %w; taking it away failed too: %v", k.svc.Name, err, berr)
	}
	k.log.Warn("kernel path not set; the relay carries the traffic", "service", k.svc.Key, "error", err)
	k.notify(fmt.Sprintf("the kernel path of %s is not set (%v); the relay carries its traffic until baton status or a deploy sets it", k.svc.Name, err))
	return nil
}

// bypass sends new connections to the relay again.
func (k *KernelRelay) bypass(ctx context.Context) error {
	if err := k.table.Bypass(ctx, k.svc.Key); err != nil {
		return fmt.Errorf("taking the kernel path of %s away before moving traffic: %w", k.svc.Name, err)
	}
	return nil
}

// Switch takes the kernel path away first, so the relay's call moves every
// new connection.
func (k *KernelRelay) Switch(ctx context.Context, from, to deploy.Endpoint) error {
	if err := k.bypass(ctx); err != nil {
		return err
	}
	return k.Relay.Switch(ctx, from, to)
}

// Split takes the kernel path away first, so the relay splits every new
// connection.
func (k *KernelRelay) Split(ctx context.Context, from, to deploy.Endpoint, percent int) error {
	if err := k.bypass(ctx); err != nil {
		return err
	}
	return k.Relay.Split(ctx, from, to, percent)
}

// kernelPoll is how often a drain looks at the old container's connection
// table: the kernel tells no one when a connection ends.
const kernelPoll = 20 * time.Millisecond

// Drain waits for the relay's connections to from, as the relay does, and
// for those the kernel carries to it: established connections on its port
// from the kernel path's source address, read from its own connection
// table.
func (k *KernelRelay) Drain(ctx context.Context, from deploy.Endpoint, max time.Duration) (deploy.DrainReport, error) {
	t0 := time.Now()
	count := func() (int, bool) { return 0, false }
	if r, err := k.route(ctx, from, false); err == nil {
		count = func() (int, bool) { return establishedFrom(from.PID, int(r.Target.Port()), r.Source) }
	} else if errors.Is(err, errNotOnKernelNet) {
		count = func() (int, bool) { return 0, true } // never routed: the kernel carries none of its connections
	} else {
		k.log.Warn("kernel path: connections of the old container not counted", "container", from.Name, "error", err)
	}
	open, counted := count()
	rep, err := k.Relay.Drain(ctx, from, max)
	if err != nil || !counted {
		return rep, err
	}
	rep.Waited += open
	left := open
	deadline := t0.Add(max)
	for left > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(kernelPoll):
		}
		if left, counted = count(); !counted {
			left = 0 // the container is gone: nothing left to wait for
		}
	}
	if left > 0 {
		k.log.Warn("drain time over; stopping the old container with connections the kernel carries still open", "container", from.Name, "max", max, "open", left)
	}
	rep.Cut += left
	rep.Duration = time.Since(t0)
	return rep, nil
}

// Finish gives the kernel path to cur, which serves alone now.
func (k *KernelRelay) Finish(ctx context.Context, cur, old deploy.Endpoint) error {
	if err := k.Relay.Finish(ctx, cur, old); err != nil {
		return err
	}
	return k.routeTo(ctx, cur)
}

// Describe is the relay's line and where the kernel path sends new
// connections.
func (k *KernelRelay) Describe(ctx context.Context) (string, error) {
	desc, err := k.Relay.Describe(ctx)
	if err != nil {
		return desc, err
	}
	target, err := k.table.Target(ctx, k.svc.Key)
	switch {
	case err != nil:
		return desc + "; kernel path unknown: " + firstLine(err.Error()), nil
	case target == "":
		return desc + "; kernel path off (new connections go through the relay until baton status or a deploy sets it up)", nil
	}
	n, err := k.table.Connections(ctx, k.svc.Key)
	if err != nil {
		return desc + "; kernel path -> " + target, nil
	}
	return fmt.Sprintf("%s; kernel path -> %s (%d connections since it was set)", desc, target, n), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
