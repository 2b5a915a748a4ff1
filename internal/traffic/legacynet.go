package traffic

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/procnet"
)

// Earlier versions joined every managed container, relay and nginx
// container to one network, dockerctl.LegacyNetwork. A host set up by them
// moves over one service at a time, at its next deploy or status, with no
// failed request:
//
//  1. the serving container, the relay and the nginx container join the
//     service's network (the deploy attaches the serving container; Ensure
//     the relay and nginx);
//  2. the relay is pointed at the container's address there, and the
//     upstream file names the new address: for an nginx container, the relay
//     by its name on the service's network (one reload; nginx resolves it
//     there), in reload mode the container's address there (one reload);
//  3. only then does each of them leave the legacy network, once no
//     connection uses its address there any more (nginx's retiring workers
//     finish their requests on the old address first), bounded in time: one
//     still busy stays attached until the next run;
//  4. an nginx container leaves it the same way once no relay or app
//     container is left there, and the network is removed once it is empty.
//
// Steps 3 and 4 read connection tables from /proc (as the drain of reload
// mode does), so they need baton on the host; without them the legacy
// network stays and nothing breaks.
type legacyLeaver struct {
	// network is the shared network to leave (dockerctl.LegacyNetwork;
	// tests use one of their own).
	network string
	eng     Engine
	log     *slog.Logger
	notify  func(string)
	// wait bounds how long one container may keep connections on its
	// legacy address before it is left attached until the next run.
	wait time.Duration
}

const legacyIdleWait = 15 * time.Second

// leave detaches ids (this service's relay and serving container) from the
// legacy network; then, once no relay or app container is left there, what
// remains (nginx containers); then removes the network once it is empty.
// Failures are logged, never returned: the service already runs on its own
// network, and the next run tries again.
func (l legacyLeaver) leave(ctx context.Context, ids []string) {
	legacy, err := l.eng.NetworkInspect(ctx, l.network, network.InspectOptions{})
	if err != nil {
		if !errdefs.IsNotFound(err) {
			l.log.Warn("inspecting the legacy network", "network", l.network, "error", err)
		}
		return
	}
	if legacy.Labels["baton.managed"] != "true" {
		return // a network of the user's that happens to be called baton
	}
	for _, id := range ids {
		if _, on := legacy.Containers[id]; on {
			l.detach(ctx, legacy.ID, id, true)
		}
	}
	if legacy, err = l.eng.NetworkInspect(ctx, legacy.ID, network.InspectOptions{}); err != nil {
		return
	}
	if len(legacy.Containers) > 0 && !l.servesThroughLegacy(ctx, legacy.Containers) {
		// What is left (nginx containers) was there to reach relays and
		// app containers, and none is left to reach.
		for id := range legacy.Containers {
			l.detach(ctx, legacy.ID, id, false)
		}
		if legacy, err = l.eng.NetworkInspect(ctx, legacy.ID, network.InspectOptions{}); err != nil {
			return
		}
	}
	if len(legacy.Containers) > 0 {
		return
	}
	if err := l.eng.NetworkRemove(ctx, legacy.ID); err != nil && !errdefs.IsNotFound(err) {
		l.log.Warn("removing the legacy network", "network", l.network, "error", err)
		return
	}
	l.notify(fmt.Sprintf("removed network %s: every service has moved to a network of its own", l.network))
}

// servesThroughLegacy reports whether a relay or an app container of some
// service is still on the legacy network (one of on, the network's
// endpoints as just inspected), so an nginx container must stay there to
// reach it.
func (l legacyLeaver) servesThroughLegacy(ctx context.Context, on map[string]network.EndpointResource) bool {
	for id := range on {
		c, err := l.eng.ContainerInspect(ctx, id)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			l.log.Warn("inspecting a container on the legacy network", "network", l.network, "container", id, "error", err)
			return true
		}
		if c.Config == nil || c.Config.Labels[deploy.LabelManaged] != "true" || c.NetworkSettings == nil || c.NetworkSettings.Networks[l.network] == nil {
			continue // not ours, or just detached
		}
		// The role as baton set it, not as an image says: a container whose
		// image calls it an app or a relay would otherwise keep every nginx
		// container on the shared network, and the network, for good.
		// (baton.managed alone is no help: baton's own relay image carries
		// it, and an image can set it.)
		own, _, err := deploy.ContainerOwnLabels(ctx, l.eng, c)
		if err != nil {
			l.log.Warn("inspecting a container on the legacy network", "network", l.network, "container", id, "error", err)
			return true
		}
		if r := own[deploy.LabelRole]; r == deploy.RoleRelay || r == deploy.RoleApp {
			l.log.Debug("a relay or app container is still on the legacy network", "network", l.network, "container", strings.TrimPrefix(c.Name, "/"))
			return true
		}
	}
	return false
}

// detach waits until container id has no established connection on its
// address on the legacy network, then disconnects it. With mustHaveMoved, a
// container that is on no service network yet stays: it would lose its only
// path.
func (l legacyLeaver) detach(ctx context.Context, netID, id string, mustHaveMoved bool) {
	c, err := l.eng.ContainerInspect(ctx, id)
	if err != nil {
		return
	}
	name := strings.TrimPrefix(c.Name, "/")
	ep := c.NetworkSettings.Networks[l.network]
	if ep == nil {
		return
	}
	moved := false
	for n := range c.NetworkSettings.Networks {
		moved = moved || dockerctl.IsServiceNetwork(n)
	}
	if (mustHaveMoved && !moved) || c.State == nil || !c.State.Running {
		return
	}
	ip := net.ParseIP(ep.IPAddress)
	// l.wait bounds the wait for connections only; the disconnect gets the
	// caller's context (a busy engine can take longer than the rest of
	// the wait to answer it).
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, l.wait)
	defer cancel()
	for {
		n, ok := establishedOn(c.State.Pid, ip)
		if !ok {
			l.log.Info("cannot read the connections of a container; leaving it on the legacy network", "container", name, "network", l.network)
			return
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			l.log.Warn("container still has connections on the legacy network; it leaves at the next deploy or status", "container", name, "network", l.network, "connections", n)
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := l.eng.NetworkDisconnect(parent, netID, id, false); err != nil && !errdefs.IsNotFound(err) {
		l.log.Warn("leaving the legacy network", "container", name, "network", l.network, "error", err)
		return
	}
	l.notify(fmt.Sprintf("detached %s from the shared network %s", name, l.network))
}

// establishedOn counts the TCP connections in state ESTABLISHED whose local
// address is ip, in the network namespace of process pid, from tcp (IPv4
// sockets) and tcp6 (dual-stack sockets, which show an IPv4 address mapped:
// Go and nginx listen that way). ok is false when neither table can be
// read.
func establishedOn(pid int, ip net.IP) (n int, ok bool) {
	addr, valid := netip.AddrFromSlice(ip.To4())
	if !valid {
		return 0, false
	}
	return procnet.CountEstablished(procRoot, pid, func(c procnet.Conn) bool { return c.Local.Addr() == addr })
}
