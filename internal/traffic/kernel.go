package traffic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
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
//
// For an nginx container the route lives in that container's own network
// namespace instead (kernelpath.Route.InNamespace): nginx's connections for
// the relay's address on the service's network go to the serving
// container's address on that network, from nginx's own address. A
// restart of nginx gives it a new namespace without the rule: the relay,
// at the address nginx names, carries its connections until baton status
// or a deploy routes them again, as after a reboot for an nginx on the
// host.
//
// For an engine's host that is another machine (a host of a rollout, nginx
// here) the route is a forwarded one (kernelpath.Route.Forwarded) in that
// host's firewall, which baton reaches through a helper container there
// (remoteKernel).
type KernelRelay struct {
	*Relay
	table  *kernelpath.Table // this host's
	remote *remoteKernel     // the engine's host, when it is another machine
	// atSwitch is the look at the old container's kernel connections
	// taken when traffic moved: what the drain waits for, before a drain
	// signal has the app close them.
	atSwitch *switchLook
}

// switchLook is a look taken at a switch, and the counter that took it,
// for the drain of that container: a counter that cannot be built again
// at the drain (an inspect that fails) must not make it wait for nothing.
type switchLook struct {
	id    string
	count connCounter
	look  connLook
}

// inNginx reports whether the route lives in an nginx container's network
// namespace.
func (k *KernelRelay) inNginx() bool { return k.settings.NginxContainer != "" }

// errNginxDown says the nginx container runs no process, so it has no
// network namespace, and no rule of baton's is in effect for it.
var errNginxDown = errors.New("not running")

// rules is the table the service's route is in: the host's, or the nginx
// container's namespace's. done releases what it holds. For an nginx
// container that does not run, the error wraps errNginxDown.
//
// On an engine's host that is another machine the helper container is made
// only to set a route (make): without it there is no rule of baton's to
// take away or describe, and the error wraps errNoHelper.
func (k *KernelRelay) rules(ctx context.Context, make bool) (tbl kernelRules, done func(), err error) {
	switch {
	case k.remote != nil:
		tbl, err := k.remote.rules(ctx, make)
		return tbl, func() {}, err
	case !k.inNginx():
		return k.table, func() {}, nil
	}
	return nginxRules(ctx, k.eng, k.settings.NginxContainer)
}

// nginxRules is the table of the network namespace of nginx container
// name; see rules.
func nginxRules(ctx context.Context, eng Engine, name string) (tbl *kernelpath.Table, done func(), err error) {
	c, err := eng.ContainerInspect(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("inspecting nginx container %s: %w", name, err)
	}
	if c.State == nil || !c.State.Running || c.State.Pid <= 0 {
		return nil, nil, fmt.Errorf("nginx container %s: %w", name, errNginxDown)
	}
	ns, err := kernelpath.OpenNamespace(c.State.Pid)
	if err != nil {
		return nil, nil, err
	}
	// The PID may have ended, and been taken by another process, between
	// the inspect and the open, or name another process where baton's PID
	// namespace is not the engine's: the namespace held open is nginx's
	// only if it is the file Docker keeps for the container's network
	// (its sandbox key), and that container still runs the same process.
	again, err := eng.ContainerInspect(ctx, c.ID)
	if err == nil && (again.State == nil || !again.State.Running || again.State.Pid != c.State.Pid) {
		err = fmt.Errorf("nginx container %s restarted while its network namespace was being opened", name)
	}
	if err == nil {
		var key string
		if again.NetworkSettings != nil {
			key = again.NetworkSettings.SandboxKey
		}
		err = kernelpath.SameNamespace(ns, key)
		if err != nil {
			err = fmt.Errorf("nginx container %s: %w", name, err)
		}
	}
	if err != nil {
		_ = ns.Close()
		return nil, nil, err
	}
	return kernelpath.NewTable(kernelpath.NamespaceRunner{NS: ns}), func() { _ = ns.Close() }, nil
}

// nginxRoute is the kernel path to cur for an nginx container: from the
// relay's address on the service's network, which nginx resolved the
// relay's name to, to cur's address there.
func (k *KernelRelay) nginxRoute(ctx context.Context, cur deploy.Endpoint) (kernelpath.Route, error) {
	name := RelayName(k.svc.Key)
	c, err := k.eng.ContainerInspect(ctx, name)
	if err != nil {
		return kernelpath.Route{}, fmt.Errorf("inspecting relay container %s: %w", name, err)
	}
	if relayOnHost(c) || k.keepsLegacyName(c) {
		return kernelpath.Route{}, deploy.Classify(deploy.ErrInvalid, "relay %s was made by an earlier baton for another way of reaching nginx, which the kernel path cannot take over; remove it (docker rm -f %s) and deploy again to recreate it (one nginx reload)", name, name)
	}
	netName := dockerctl.ServiceNetwork(k.svc.Key)
	relayIP, ok, err := addrOn(c, netName)
	if err == nil && !ok {
		err = fmt.Errorf("relay %s has no address on %s", name, netName)
	}
	if err != nil {
		return kernelpath.Route{}, err
	}
	target, err := netip.ParseAddr(cur.IP)
	if err != nil {
		return kernelpath.Route{}, fmt.Errorf("container %s has address %q on %s: %w", cur.Name, cur.IP, netName, err)
	}
	return kernelpath.Route{Service: k.svc.Key, Listen: netip.AddrPortFrom(relayIP, relayListenPort), Target: netip.AddrPortFrom(target, uint16(cur.Port))}, nil
}

// nginxAddr is the nginx container's address on the service's network:
// where the connections the kernel carries come from.
func (k *KernelRelay) nginxAddr(ctx context.Context) (netip.Addr, error) {
	netName := dockerctl.ServiceNetwork(k.svc.Key)
	c, err := k.eng.ContainerInspect(ctx, k.settings.NginxContainer)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("inspecting nginx container %s: %w", k.settings.NginxContainer, err)
	}
	a, ok, err := addrOn(c, netName)
	if err == nil && !ok {
		err = fmt.Errorf("nginx container %s has no address on %s", k.settings.NginxContainer, netName)
	}
	return a, err
}

// addrOn is c's address on network netName; ok is false when c is not on
// it, or has no address there yet.
func addrOn(c container.InspectResponse, netName string) (addr netip.Addr, ok bool, err error) {
	if c.NetworkSettings == nil {
		return netip.Addr{}, false, nil
	}
	ep := c.NetworkSettings.Networks[netName]
	if ep == nil || ep.IPAddress == "" {
		return netip.Addr{}, false, nil
	}
	if addr, err = netip.ParseAddr(ep.IPAddress); err != nil {
		return netip.Addr{}, false, fmt.Errorf("container %s has address %q on %s: %w", strings.TrimPrefix(c.Name, "/"), ep.IPAddress, netName, err)
	}
	return addr, true, nil
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
	if k.inNginx() {
		return k.nginxRoute(ctx, cur)
	}
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
	var src netip.Addr
	if k.remote != nil {
		// The bridge is on the engine's host: its gateway as Docker
		// says, which the helper checks against the bridge there.
		src, err = gatewayOn(nw, ip)
	} else {
		src, err = kernelpath.PickSource(bridge, ip)
	}
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
		if ip, ok, err := addrOn(c, netName); err != nil || ok {
			return ip, err
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

// answers checks that the app accepts connections on addr (see answers),
// from the engine's host: through the relay container, which is in that
// host's network namespace, when it is another machine.
func (k *KernelRelay) answers(ctx context.Context, addr netip.AddrPort) error {
	if k.remote == nil || k.dialVia == nil {
		return answers(ctx, addr) // the engine's containers are reachable from here
	}
	ctx, cancel := context.WithTimeout(ctx, kernelDialCheck)
	defer cancel()
	c, err := k.dialVia(ctx, RelayName(k.svc.Key), addr.String())
	if err != nil {
		return fmt.Errorf("the app does not answer on %s, its kernel network address (it must listen on all its interfaces, as on 0.0.0.0): %w", addr, err)
	}
	return c.Close()
}

// Prepare connects next, a new container still warming up, to its
// service's kernel network, so the route that Finish gives it needs no
// connect (about 0.1 s of Docker's, measured under load) on the deploy's
// way to its return. The connect by ID, under the new container's own
// name, also meets no endpoint of a container that had its final name.
func (k *KernelRelay) Prepare(ctx context.Context, next deploy.Endpoint) error {
	if k.inNginx() {
		return nil // the route names next's address on the service's network
	}
	netName, err := k.eng.EnsureKernelNetwork(ctx, k.svc.Key)
	if err != nil {
		return err
	}
	_, err = k.kernelAddr(ctx, next, netName, true)
	return err
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
	if err == nil && !k.inNginx() {
		// In nginx's namespace the route names the address the relay
		// dials and the probes reached: the app answers there.
		err = k.answers(ctx, r.Target)
	}
	if err == nil {
		err = k.setRoute(ctx, r)
	}
	if err == nil {
		return nil
	}
	if berr := k.bypassRoute(ctx); berr != nil {
		return fmt.Errorf("kernel path of %s: %w; taking it away failed too: %v", k.svc.Name, err, berr)
	}
	k.log.Warn("kernel path not set; the relay carries the traffic", "service", k.svc.Key, "error", err)
	k.notify(fmt.Sprintf("the kernel path of %s is not set (%v); the relay carries its traffic until baton status or a deploy sets it", k.svc.Name, err))
	return nil
}

// setRoute installs r where the service's route lives.
func (k *KernelRelay) setRoute(ctx context.Context, r kernelpath.Route) error {
	tbl, done, err := k.rules(ctx, true)
	if err != nil {
		return err
	}
	defer done()
	return tbl.Route(ctx, r)
}

// bypassRoute takes the service's route away. An nginx container that does
// not run has no namespace, so no route: nothing to take away.
func (k *KernelRelay) bypassRoute(ctx context.Context) error {
	// On another machine the helper is made if need be: one removed by
	// hand does not mean its rules are gone.
	tbl, done, err := k.rules(ctx, true)
	if errors.Is(err, errNginxDown) {
		return nil
	}
	if err != nil {
		return err
	}
	defer done()
	return tbl.Bypass(ctx, k.svc.Key)
}

// bypass sends new connections to the relay again.
func (k *KernelRelay) bypass(ctx context.Context) error {
	if err := k.bypassRoute(ctx); err != nil {
		return fmt.Errorf("taking the kernel path of %s away before moving traffic: %w", k.svc.Name, err)
	}
	return nil
}

// Switch takes the kernel path away first, so the relay's call moves every
// new connection. It then counts the connections the kernel still carries
// to from, as the relay counts its own when traffic moves: the drain waits
// for those (a drain signal may have the app close them before it begins).
func (k *KernelRelay) Switch(ctx context.Context, from, to deploy.Endpoint) error {
	if err := k.bypass(ctx); err != nil {
		return err
	}
	if err := k.Relay.Switch(ctx, from, to); err != nil {
		return err
	}
	if count := k.kernelCounter(ctx, from); count != nil {
		// Bounded: traffic has moved, and a look that fails here is
		// taken again by the drain.
		lctx, cancel := context.WithTimeout(ctx, switchLookTimeout)
		k.atSwitch = &switchLook{id: from.ID, count: count, look: count.look(lctx)}
		cancel()
	}
	return nil
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

// remoteKernelPoll is kernelPoll on an engine's host that is another
// machine, where each look is a docker exec (perhaps over ssh).
const remoteKernelPoll = 200 * time.Millisecond

// kernelCounter counts the connections the kernel path carries to from:
// on its port, from the route's source address, in its own table; nil
// when they cannot be counted (said in the log).
func (k *KernelRelay) kernelCounter(ctx context.Context, from deploy.Endpoint) connCounter {
	local := func(c func() (int, bool)) connCounter {
		return func(context.Context) (int, bool, error) { n, ok := c(); return n, ok, nil }
	}
	if k.inNginx() {
		// From nginx's own address: the relay dials from its own.
		src, err := k.nginxAddr(ctx)
		if err != nil {
			k.log.Warn("kernel path: connections of the old container not counted", "container", from.Name, "error", err)
			return nil
		}
		return local(func() (int, bool) { return establishedFrom(from.PID, from.Port, src) })
	}
	r, err := k.route(ctx, from, false)
	switch {
	case err == nil && k.remote != nil:
		return func(ctx context.Context) (int, bool, error) {
			return k.remote.established(ctx, from.PID, int(r.Target.Port()), r.Source)
		}
	case err == nil:
		return local(func() (int, bool) { return establishedFrom(from.PID, int(r.Target.Port()), r.Source) })
	case errors.Is(err, errNotOnKernelNet):
		return local(func() (int, bool) { return 0, true }) // never routed: the kernel carries none of its connections
	}
	k.log.Warn("kernel path: connections of the old container not counted", "container", from.Name, "error", err)
	return nil
}

// Drain waits for the relay's connections to from, as the relay does, and
// for those the kernel carries to it: established connections on its port
// from the kernel path's source address, read from its own connection
// table. A look that fails (a helper's exec on another machine) is tried
// again at the next poll: it says nothing about the connections, and
// taking it for "none left" would stop the old container under them.
func (k *KernelRelay) Drain(ctx context.Context, from deploy.Endpoint, max time.Duration) (deploy.DrainReport, error) {
	t0 := time.Now()
	var count connCounter
	var first connLook
	if at := k.atSwitch; at != nil && at.id == from.ID {
		count, first = at.count, at.look // what was open when traffic moved
	} else if count = k.kernelCounter(ctx, from); count != nil {
		first = count.look(ctx)
	}
	k.atSwitch = nil
	if count == nil {
		return k.Relay.Drain(ctx, from, max)
	}
	if first.gone() {
		// The container serves (or served a moment ago) but its table
		// cannot be read: a PID that is not the one baton can see.
		k.log.Warn("kernel path: the old container's connection table cannot be read; its connections are not waited for", "container", from.Name, "pid", from.PID)
	}
	rep, err := k.Relay.Drain(ctx, from, max)
	if err != nil {
		return rep, err
	}
	poll := kernelPoll
	if k.remote != nil {
		poll = remoteKernelPoll // each look is a docker exec on that host
	}
	kd, err := waitKernelConns(ctx, first, count, poll, t0.Add(max))
	if err != nil {
		return rep, err
	}
	rep.Waited += kd.waited
	rep.KernelWaited = kd.waited
	rep.Cut += kd.left
	rep.KernelUncounted = kd.err != nil
	switch {
	case kd.err != nil:
		k.log.Warn("drain time over; the connections the kernel carries to the old container could not be counted, stopping it", "container", from.Name, "max", max, "error", kd.err)
	case kd.left > 0:
		k.log.Warn("drain time over; stopping the old container with connections the kernel carries still open", "container", from.Name, "max", max, "open", kd.left)
	}
	rep.Duration = time.Since(t0)
	return rep, nil
}

// kernelDrain is what a drain saw of the kernel path's connections:
// waited, those open at the first look that worked; left, those still
// open at the deadline; err, the last look's failure when no look after
// it worked.
type kernelDrain struct {
	waited, left int
	err          error
}

// waitKernelConns polls count until no connection the kernel carries is
// open, the container is gone, or the deadline passes; first is the look
// taken when traffic moved. A deadline already past (the relay's drain took
// it all) still gets one look, so what is cut is what is open now.
func waitKernelConns(ctx context.Context, first connLook, count connCounter, poll time.Duration, deadline time.Time) (kernelDrain, error) {
	var kd kernelDrain
	last, seen := first, first.err == nil
	if seen {
		kd.waited = first.open
	}
	for looked := false; last.pending() && (!looked || time.Now().Before(deadline)); looked = true {
		if looked || time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return kd, ctx.Err()
			case <-time.After(poll):
			}
		}
		lctx, cancel := context.WithTimeout(ctx, lookTimeout(poll, deadline))
		last = count.look(lctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return kd, err
		}
		if !seen && last.err == nil {
			seen = true // the first look that worked: what was open then
			kd.waited = last.open
		}
	}
	if last.ok {
		kd.left = last.open
	}
	kd.err = last.err
	return kd, nil
}

// lookTimeout bounds one look (a docker exec on another machine may hang)
// so that it cannot hold the drain much past its deadline.
func lookTimeout(poll time.Duration, deadline time.Time) time.Duration {
	d := time.Until(deadline)
	if floor := 10 * poll; d < floor {
		d = floor // the one look after the deadline, and a last one before it
	}
	return min(d, maxLook)
}

// maxLook is the most one look at a container's connections may take;
// switchLookTimeout the most the one at a switch may.
const (
	maxLook           = 10 * time.Second
	switchLookTimeout = 5 * time.Second
)

// connCounter counts the connections the kernel carries to a container:
// ok false (with no error) when its table cannot be read because it is
// gone; an error when the look itself failed.
type connCounter func(ctx context.Context) (n int, ok bool, err error)

// connLook is one look of a connCounter.
type connLook struct {
	open int
	ok   bool
	err  error
}

func (c connCounter) look(ctx context.Context) connLook {
	n, ok, err := c(ctx)
	return connLook{open: n, ok: ok, err: err}
}

// gone: the container's table cannot be read, so nothing is left to wait
// for.
func (l connLook) gone() bool { return l.err == nil && !l.ok }

// pending: connections are open, or it is not known whether any are.
func (l connLook) pending() bool { return l.err != nil || (l.ok && l.open > 0) }

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
	tbl, done, err := k.rules(ctx, false)
	if errors.Is(err, errNginxDown) {
		return desc + "; kernel path off (nginx container " + k.settings.NginxContainer + " is not running)", nil
	}
	if errors.Is(err, errNoHelper) {
		return desc + "; kernel path off (no helper " + KernelHelperName + " on the engine's host: new connections go through the relay until baton status or a deploy sets it up)", nil
	}
	if err != nil {
		return desc + "; kernel path unknown: " + firstLine(err.Error()), nil
	}
	defer done()
	target, err := tbl.Target(ctx, k.svc.Key)
	switch {
	case err != nil:
		return desc + "; kernel path unknown: " + firstLine(err.Error()), nil
	case target == "":
		return desc + "; kernel path off (new connections go through the relay until baton status or a deploy sets it up)", nil
	}
	n, err := tbl.Connections(ctx, k.svc.Key)
	if err != nil {
		return desc + "; kernel path -> " + target, nil
	}
	return fmt.Sprintf("%s; kernel path -> %s (%d connections since it was set)", desc, target, n), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// KernelRoutes finds and removes a service's kernel paths wherever baton
// puts them: in the host's rules, and in its nginx container's network
// namespace. It is the deploy's KernelRoutes.
type KernelRoutes struct {
	Engine Engine
	Host   *kernelpath.Table
	// Remote says the engine's host is another machine: its routes are
	// in its firewall, reached through the helper container there, and
	// Host is not used.
	Remote bool
	// RelayImage is the helper's image ("" for baton's own).
	RelayImage string
}

func (k KernelRoutes) remote() *remoteKernel {
	return &remoteKernel{eng: k.Engine, image: k.RelayImage}
}

// inNginx runs f on the table of nginx's namespace; an nginx that does not
// run has none, so no route.
func (k KernelRoutes) inNginx(ctx context.Context, nginx string, f func(*kernelpath.Table) error) error {
	tbl, done, err := nginxRules(ctx, k.Engine, nginx)
	if errors.Is(err, errNginxDown) || errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer done()
	return f(tbl)
}

func (k KernelRoutes) Has(ctx context.Context, service, nginx string) (bool, error) {
	if k.Remote {
		return k.remote().has(ctx, service)
	}
	has, err := k.Host.Has(ctx, service)
	if err != nil || has || nginx == "" {
		return has, err
	}
	err = k.inNginx(ctx, nginx, func(t *kernelpath.Table) error {
		has, err = t.Has(ctx, service)
		return err
	})
	return has, err
}

func (k KernelRoutes) Remove(ctx context.Context, service, nginx string) error {
	if k.Remote {
		return k.remote().remove(ctx, service)
	}
	if err := k.Host.Remove(ctx, service); err != nil {
		return err
	}
	if nginx == "" {
		return nil
	}
	return k.inNginx(ctx, nginx, func(t *kernelpath.Table) error { return t.Remove(ctx, service) })
}
