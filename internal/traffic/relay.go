package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/relay"
)

// Relay moves traffic with baton's relay: nginx's upstream names the relay
// once, and every later switch is a control call to the relay, with no nginx
// reload at all, so no client keep-alive connection is ever closed by a
// deploy. The relay runs in its own container (from an image of this baton
// binary): for an nginx container, on its service's network; for an nginx on
// the host, in the host's network namespace, listening on 127.0.0.1 (or the
// operator's --relay-address) and dialing the app's address on its service's
// network, so no docker-proxy sits in the path.
type Relay struct {
	eng      Engine
	svc      deploy.Service
	settings deploy.Settings
	image    string
	nginx    *nginxControl
	log      *slog.Logger
	notify   func(string)
	ctl      relayController // chosen on first use
	shared   func(own []string) []string
	// dialVia, set for an engine on another machine, reaches the relay's
	// TCP control port from inside its own container (docker exec), since
	// its address is not reachable from here.
	dialVia func(ctx context.Context, via, addr string) (net.Conn, error)
}

const (
	relayListenPort = 8080
	relayStateDir   = "/state"
	relayControl    = relayStateDir + "/ctl.sock"
	// LabelRelayPort records the host port a relay publishes for an nginx
	// on the host.
	LabelRelayPort = "baton.relay-port"
	// LabelRelayUpstream records the nginx upstream file a relay belongs
	// in. Replicas of one service each have a relay, and the file lists all
	// of them, so nginx balances across the replicas.
	LabelRelayUpstream = "baton.relay-upstream"
	// LabelRelayNetwork names the service network a relay was created on.
	// Relays of earlier versions, made on the network shared by all
	// services, have none: an nginx container knows them by their bare
	// name, resolved on that network.
	LabelRelayNetwork = "baton.relay-network"
	// LabelRelayListen is the address a relay in the host's network
	// namespace listens on, as nginx names it; LabelRelayControl its TCP
	// control address (always on 127.0.0.1: only this host's baton calls
	// it). Relays that publish a port (earlier versions) have neither.
	LabelRelayListen  = "baton.relay-listen"
	LabelRelayControl = "baton.relay-control"
	// LabelRelayAddress records the address a relay listens on (or, for
	// a relay of an earlier version, publishes its port on) when it is not
	// 127.0.0.1: an nginx on another host reaches it there.
	LabelRelayAddress = "baton.relay-address"
)

// relayOnHost reports whether relay container c runs in the host's network
// namespace (made for an nginx on the host by this version).
func relayOnHost(c container.InspectResponse) bool {
	return c.HostConfig != nil && c.HostConfig.NetworkMode.IsHost()
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// RelayName is the relay container of a service.
func RelayName(serviceKey string) string {
	return "baton-relay-" + unsafeName.ReplaceAllString(serviceKey, "_")
}

func (t *Relay) Mode() string { return "relay" }

// Ensure makes sure the relay runs, targets cur, and that nginx's upstream
// names the relay.
func (t *Relay) Ensure(ctx context.Context, cur deploy.Endpoint) error {
	c, err := t.ensureContainer(ctx)
	if err != nil {
		return err
	}
	st, err := t.status(ctx)
	if err != nil {
		return err
	}
	want := relayTarget(cur, !relayOnHost(c))
	// A split still on (an aborted or interrupted canary) ends here too:
	// cur alone is to get traffic.
	if st.Current == nil || !st.Current.Target.Equal(want) || st.Canary != nil {
		if _, err := t.set(ctx, want); err != nil {
			return err
		}
		if st.Current != nil && st.Current.Name == want.Name {
			// The same container at a new address (its service's network
			// instead of the shared one, or a new IP after a reboot): the
			// connections to the old address finish there, and it stops
			// being a dial fallback.
			t.forgetOldAddrs(ctx, cur)
		}
	}
	servers, nets, err := t.upstreamServers(ctx, c)
	if err != nil {
		return err
	}
	if t.shared != nil {
		servers = t.shared(servers)
	}
	if _, err := t.nginx.apply(ctx, servers, nets...); err != nil {
		return err
	}
	leaving := []string{cur.ID}
	if !t.keepsLegacyName(c) {
		leaving = append(leaving, c.ID)
	}
	legacyLeaver{network: dockerctl.LegacyNetwork, eng: t.eng, log: t.log, notify: t.notify, wait: legacyIdleWait}.leave(ctx, leaving)
	return nil
}

// keepsLegacyName reports whether relay c is known to an nginx container by
// the bare name it had on the network all services shared (a relay made by
// an earlier version). nginx resolved that name when it last loaded its
// configuration, so the relay stays on that network as well as on its
// service's: moving nginx to another name would take a reload, and a reload
// can lose a request on a keep-alive connection. Only relays and nginx
// containers stay there; recreating the relay (docker rm -f, then a deploy
// or status) moves it over with the one reload a new relay needs anyway.
func (t *Relay) keepsLegacyName(c container.InspectResponse) bool {
	return t.settings.NginxContainer != "" && c.Config != nil && c.Config.Labels[LabelRelayNetwork] == ""
}

// forgetOldAddrs waits, bounded, for the connections to cur's previous
// addresses to end, then has the relay forget them.
func (t *Relay) forgetOldAddrs(ctx context.Context, cur deploy.Endpoint) {
	ctl, err := t.control(ctx)
	if err == nil {
		_, err = ctl.WaitDrained(ctx, cur.ID, legacyIdleWait)
	}
	if err == nil {
		err = t.forget(ctx, cur)
	}
	if err != nil && !errors.Is(err, relay.ErrNotDraining) && !errors.Is(err, relay.ErrUnknownTarget) {
		t.log.Warn("forgetting the previous address of the serving container", "container", cur.Name, "error", err)
	}
}

// upstreamServers lists the relays that belong in this service's upstream
// file: this one and those of the service's other replicas, and the
// networks an nginx container needs to reach them.
func (t *Relay) upstreamServers(ctx context.Context, self container.InspectResponse) (servers, nets []string, err error) {
	list, err := t.eng.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", deploy.LabelRole+"="+deploy.RoleRelay),
		filters.Arg("label", LabelRelayUpstream+"="+t.settings.NginxUpstream))})
	if err != nil {
		return nil, nil, fmt.Errorf("listing relays of %s: %w", t.settings.NginxUpstream, err)
	}
	seen := map[string]bool{}
	add := func(c container.InspectResponse, key string) error {
		if t.settings.NginxContainer != "" && relayOnHost(c) {
			name := strings.TrimPrefix(c.Name, "/")
			return fmt.Errorf("relay container %s listens on the host for an nginx on the host, which an nginx container cannot reach; remove it (docker rm -f %s) and deploy again to recreate it", name, name)
		}
		if t.settings.NginxContainer != "" {
			// An nginx container finds the relay by name on the relay's
			// service network, so a replica's relay must be there too.
			netName, err := t.joinServiceNetwork(ctx, c, key)
			if err != nil {
				return err
			}
			if !slices.Contains(nets, netName) {
				nets = append(nets, netName)
			}
		}
		s, err := t.upstreamServer(c, key)
		if err != nil {
			return err
		}
		if !seen[s] {
			seen[s] = true
			servers = append(servers, s)
		}
		return nil
	}
	if err := add(self, t.svc.Key); err != nil {
		return nil, nil, err
	}
	for _, l := range list {
		if l.ID == self.ID || l.Labels[deploy.LabelService] == "" || RelayName(l.Labels[deploy.LabelService]) != strings.TrimPrefix(firstName(l.Names), "/") {
			continue // not a relay baton named for its service
		}
		c, err := t.eng.ContainerInspect(ctx, l.ID)
		if err != nil {
			continue // gone meanwhile
		}
		// A container whose image calls it a relay is not one of baton's:
		// nginx must never be pointed at it.
		own, _, err := deploy.ContainerOwnLabels(ctx, t.eng, c)
		if err != nil {
			return nil, nil, err
		}
		if own[deploy.LabelRole] != deploy.RoleRelay || own[LabelRelayUpstream] != t.settings.NginxUpstream {
			continue
		}
		if err := add(c, l.Labels[deploy.LabelService]); err != nil {
			return nil, nil, err
		}
	}
	sort.Strings(servers)
	return servers, nets, nil
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// joinServiceNetwork attaches relay c of service key to that service's
// network if it is not there yet (a relay made by an earlier version, which
// joined one network shared by all services), under its name and its name
// qualified by the network. It returns the network's name.
func (t *Relay) joinServiceNetwork(ctx context.Context, c container.InspectResponse, key string) (string, error) {
	netName, err := t.eng.EnsureServiceNetwork(ctx, key)
	if err != nil {
		return "", err
	}
	if _, ok := c.NetworkSettings.Networks[netName]; ok {
		return netName, nil
	}
	name := strings.TrimPrefix(c.Name, "/")
	if err := t.eng.NetworkConnect(ctx, netName, c.ID, &network.EndpointSettings{Aliases: relayAliases(name, netName)}); err != nil {
		return "", fmt.Errorf("attaching relay container %s to network %s: %w", name, netName, err)
	}
	t.notify(fmt.Sprintf("attached relay container %s to network %s", name, netName))
	return netName, nil
}

// relayAliases are the relay's names on its service's network. The
// qualified one resolves on that network only, so an nginx container that
// is on other networks with the relay still reaches it there.
func relayAliases(name, netName string) []string {
	return []string{name, name + "." + netName}
}

func (t *Relay) Describe(ctx context.Context) (string, error) {
	st, err := t.status(ctx)
	if err != nil {
		return "", err
	}
	return describeRelay(RelayName(t.svc.Key), st), nil
}

// describeRelay is the relay's line in baton status: where it sends
// connections, and what went wrong there (failed dials, connections the
// container reset) once anything has, as a bake watches those.
func describeRelay(name string, st relay.Status) string {
	if st.Current == nil {
		return "relay " + name + " has no target"
	}
	desc := fmt.Sprintf("relay %s -> %s (%d open%s)", name, strings.Join(st.Current.Addrs, " | "), st.Current.Active, troubles(*st.Current))
	if c := st.Canary; c != nil {
		desc = fmt.Sprintf("relay %s split: %d%% -> %s (%d served, %d open, %d dial errors, %d resets), %d%% canary -> %s (%d served, %d open, %d dial errors, %d resets)",
			name, 100-st.CanaryPercent, strings.Join(st.Current.Addrs, " | "), st.Current.Total, st.Current.Active, st.Current.DialErrors, st.Current.Resets,
			st.CanaryPercent, strings.Join(c.Addrs, " | "), c.Total, c.Active, c.DialErrors, c.Resets)
	}
	for _, d := range st.Draining {
		desc += fmt.Sprintf("; draining %s (%d open%s)", d.Name[:min(12, len(d.Name))], d.Active, troubles(d))
	}
	return desc
}

// troubles is ", N dial errors, M resets" for a target that had any.
func troubles(ts relay.TargetStatus) string {
	if ts.DialErrors == 0 && ts.Resets == 0 {
		return ""
	}
	return fmt.Sprintf(", %d dial errors, %d resets", ts.DialErrors, ts.Resets)
}

func (t *Relay) Switch(ctx context.Context, from, to deploy.Endpoint) error {
	if to.IP == "" {
		return fmt.Errorf("container %s has no address on its service's network", to.Name)
	}
	onHost, err := t.onHost(ctx)
	if err != nil {
		return err
	}
	_, err = t.set(ctx, relayTarget(to, !onHost))
	return err
}

// onHost reports whether the service's relay runs in the host's network
// namespace.
func (t *Relay) onHost(ctx context.Context) (bool, error) {
	name := RelayName(t.svc.Key)
	c, err := t.eng.ContainerInspect(ctx, name)
	if err != nil {
		return false, fmt.Errorf("inspecting relay container %s: %w", name, err)
	}
	return relayOnHost(c), nil
}

// Split sends percent of new connections to `to` (the canary) and the rest
// to `from`, which stays the current target: a later Switch to `to`
// promotes it, a Switch back to `from` ends the split. A relay made by a
// baton without canaries does not know the op: recreating it (docker rm -f
// the relay, then a deploy) brings one that does.
func (t *Relay) Split(ctx context.Context, from, to deploy.Endpoint, percent int) error {
	if to.IP == "" {
		return fmt.Errorf("container %s has no address on its service's network", to.Name)
	}
	onHost, err := t.onHost(ctx)
	if err != nil {
		return err
	}
	ctl, err := t.control(ctx)
	if err != nil {
		return err
	}
	if _, err := ctl.Split(ctx, relayTarget(to, !onHost), percent); err != nil {
		var re *relay.RemoteError
		if errors.As(err, &re) && re.Code == "bad_request" && strings.Contains(re.Message, "unknown") {
			return fmt.Errorf("relay %s predates canaries (%v); remove it (docker rm -f %s) and deploy again to recreate it", RelayName(t.svc.Key), err, RelayName(t.svc.Key))
		}
		return err
	}
	return nil
}

// Counts is what the relay counted for ep, whether it is the current
// target, the canary or draining; zero counts when the relay does not know
// it.
func (t *Relay) Counts(ctx context.Context, ep deploy.Endpoint) (deploy.TargetCounts, error) {
	st, err := t.status(ctx)
	if err != nil {
		return deploy.TargetCounts{}, err
	}
	all := append([]relay.TargetStatus{}, st.Draining...)
	if st.Current != nil {
		all = append(all, *st.Current)
	}
	if st.Canary != nil {
		all = append(all, *st.Canary)
	}
	for _, ts := range all {
		if ts.Name == ep.ID {
			return deploy.TargetCounts{Active: ts.Active, Total: ts.Total, DialErrors: ts.DialErrors, Resets: ts.Resets}, nil
		}
	}
	return deploy.TargetCounts{}, nil
}

// Drain waits on the relay's own count of connections to `from`: the relay
// reports the moment it reaches zero, so the wait is exactly as long as the
// slowest request in flight, at most max. Then the relay forgets `from`, so
// it is no longer a dial fallback once it is stopped.
func (t *Relay) Drain(ctx context.Context, from deploy.Endpoint, max time.Duration) (deploy.DrainReport, error) {
	t0 := time.Now()
	ctl, err := t.control(ctx)
	if err != nil {
		return deploy.DrainReport{}, err
	}
	w, err := ctl.WaitDrained(ctx, from.ID, max)
	rep := deploy.DrainReport{Counted: true, Waited: w.Waited, Cut: w.Open}
	for _, d := range w.Status.Draining {
		if d.Name == from.ID {
			rep.DialErrors, rep.Resets = d.DialErrors, d.Resets
		}
	}
	switch {
	case errors.Is(err, relay.ErrNotDraining) || errors.Is(err, relay.ErrUnknownTarget):
		return deploy.DrainReport{Counted: true, Duration: time.Since(t0)}, nil // never was a target, or already gone: nothing in flight
	case err != nil:
		return deploy.DrainReport{}, err
	case !w.Drained:
		t.log.Warn("drain time over; stopping the old container with connections still open", "container", from.Name, "max", max, "open", w.Open)
	}
	rep.Duration = time.Since(t0)
	return rep, t.forget(ctx, from)
}

// Finish has nothing left to do: Drain already made the relay forget the old
// container, and the relay knows the new one by ID, which a rename keeps.
func (t *Relay) Finish(context.Context, deploy.Endpoint, deploy.Endpoint) error { return nil }

func (t *Relay) forget(ctx context.Context, ep deploy.Endpoint) error {
	ctl, err := t.control(ctx)
	if err != nil {
		return err
	}
	if err := ctl.Forget(ctx, ep.ID); err != nil && !errors.Is(err, relay.ErrUnknownTarget) && !errors.Is(err, relay.ErrNotDraining) {
		return err
	}
	return nil
}

// relayTarget is an app container as a relay target: its IP on its
// service's network first, then, byName, its short ID, which Docker's DNS
// resolves on that network even after a daemon restart gave it another IP.
// A relay in the host's network namespace has no Docker DNS (the name would
// go to the host's resolver): it gets the IP alone, which baton status
// re-points after a reboot.
func relayTarget(ep deploy.Endpoint, byName bool) relay.Target {
	addrs := []string{ep.Addr()}
	if byName && len(ep.ID) >= 12 {
		addrs = append(addrs, net.JoinHostPort(ep.ID[:12], strconv.Itoa(ep.Port)))
	}
	return relay.Target{Name: ep.ID, Addrs: addrs}
}

// upstreamServer is the address nginx uses for relay c of service key: its
// name qualified by the service's network for an nginx container (its bare
// name for a relay of an earlier version, see keepsLegacyName), the
// address it listens on in the host's network namespace (or the loopback
// port an earlier version's relay publishes) for an nginx on the host.
func (t *Relay) upstreamServer(c container.InspectResponse, key string) (string, error) {
	name := strings.TrimPrefix(c.Name, "/")
	if listen := c.Config.Labels[LabelRelayListen]; listen != "" && relayOnHost(c) {
		return listen, nil
	}
	if t.settings.NginxContainer != "" {
		if t.keepsLegacyName(c) {
			return net.JoinHostPort(name, strconv.Itoa(relayListenPort)), nil
		}
		return net.JoinHostPort(name+"."+dockerctl.ServiceNetwork(key), strconv.Itoa(relayListenPort)), nil
	}
	port := c.Config.Labels[LabelRelayPort]
	if port == "" {
		return "", fmt.Errorf("relay container %s publishes no host port for an nginx on the host; remove it (docker rm -f %s) and deploy again to recreate it", name, name)
	}
	return net.JoinHostPort(relayHostIP(c.Config.Labels[LabelRelayAddress]), port), nil
}

// relayHostIP is the address a relay publishes on: the one asked for, else
// loopback, so a relay is reachable from another host only when the
// operator said on which of its addresses.
func relayHostIP(addr string) string {
	if addr == "" {
		return "127.0.0.1"
	}
	return addr
}

// ensureContainer starts the service's relay container, creating it the
// first time.
func (t *Relay) ensureContainer(ctx context.Context) (container.InspectResponse, error) {
	name := RelayName(t.svc.Key)
	c, err := t.eng.ContainerInspect(ctx, name)
	if err == nil {
		// A relay of an earlier version is on the shared network only. One
		// in the host's network namespace joins no network: it reaches the
		// app's address on its service's network through the host.
		if err := t.listensAsAsked(c); err != nil {
			return c, err
		}
		if !relayOnHost(c) {
			if _, err := t.joinServiceNetwork(ctx, c, t.svc.Key); err != nil {
				return c, err
			}
			if c, err = t.eng.ContainerInspect(ctx, name); err != nil {
				return c, fmt.Errorf("inspecting relay container %s: %w", name, err)
			}
		}
		if !c.State.Running {
			if err := t.eng.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
				return c, fmt.Errorf("starting relay container %s: %w", name, err)
			}
			if err := t.waitReady(ctx, false); err != nil {
				return c, err
			}
		}
		return c, nil
	}
	if !errdefs.IsNotFound(err) {
		return c, fmt.Errorf("inspecting relay container %s: %w", name, err)
	}
	if err := t.create(ctx, name); err != nil {
		return c, err
	}
	return t.eng.ContainerInspect(ctx, name)
}

// listensAsAsked refuses to go on with a relay in the host's namespace that
// listens elsewhere than --relay-address/--relay-port now ask: the upstream
// file would keep naming the old address while the deploy reports the new
// one. Moving it means recreating it, which costs one nginx reload.
func (t *Relay) listensAsAsked(c container.InspectResponse) error {
	listen := c.Config.Labels[LabelRelayListen]
	if !relayOnHost(c) || listen == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil
	}
	wantHost, wantPort := t.settings.RelayAddress, ""
	if t.settings.RelayPort != 0 {
		wantPort = strconv.Itoa(t.settings.RelayPort)
	}
	if (wantHost == "" || wantHost == host) && (wantPort == "" || wantPort == port) {
		return nil
	}
	name := strings.TrimPrefix(c.Name, "/")
	return deploy.Classify(deploy.ErrInvalid, "relay %s listens on %s, not where --relay-address/--relay-port ask; remove it (docker rm -f %s) and deploy again to recreate it there (one nginx reload)", name, listen, name)
}

func (t *Relay) create(ctx context.Context, name string) error {
	img := t.image
	if img == "" {
		var err error
		if img, err = t.eng.EnsureSelfImage(ctx); err != nil {
			return err
		}
	}
	batonNet, err := t.eng.EnsureServiceNetwork(ctx, t.svc.Key)
	if err != nil {
		return err
	}
	token, err := newToken()
	if err != nil {
		return err
	}
	listen := nat.Port(strconv.Itoa(relayListenPort) + "/tcp")
	cfg := &container.Config{
		Image: img,
		Cmd: []string{"relay", "serve", "--listen", ":" + strconv.Itoa(relayListenPort),
			"--control", relayControl, "--state", relayStateDir + "/relay.json",
			"--control-tcp", ":" + strconv.Itoa(relayControlPort)},
		// The Go runtime collects harder as it nears the cgroup's limit
		// instead of being killed at it.
		Env:  []string{relayTokenEnv + "=" + token, "GOMEMLIMIT=" + strconv.Itoa(relayMemoryLimit*3/4>>20) + "MiB"},
		User: dockerctl.RelayUser,
		Labels: map[string]string{
			deploy.LabelManaged: "true",
			deploy.LabelRole:    deploy.RoleRelay,
			deploy.LabelService: t.svc.Key,
			LabelRelayUpstream:  t.settings.NginxUpstream,
			LabelRelayNetwork:   batonNet,
		},
		ExposedPorts: nat.PortSet{listen: struct{}{}},
	}
	host := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: RelayVolume(t.svc.Key), Target: relayStateDir}},
		NetworkMode:   container.NetworkMode(batonNet),
	}
	hardenRelay(host)
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{batonNet: {Aliases: relayAliases(name, batonNet)}}}
	if t.settings.NginxContainer == "" {
		// For an nginx on the host the relay lives in the host's network
		// namespace: nginx reaches it on loopback and it dials the app's
		// address on its service's network, as nginx itself would. A
		// published port would put docker-proxy, a second userland copier,
		// in front of every request (measured: the relay path carried 0.37x
		// the direct path's requests/s through it; see docs/NOTES.md).
		listenAddr, ctlAddr, err := t.hostAddrs()
		if err != nil {
			return err
		}
		cfg.Cmd = []string{"relay", "serve", "--listen", listenAddr,
			"--control", relayControl, "--state", relayStateDir + "/relay.json",
			"--control-tcp", ctlAddr}
		cfg.ExposedPorts = nil
		_, port, _ := net.SplitHostPort(listenAddr)
		cfg.Labels[LabelRelayPort] = port
		cfg.Labels[LabelRelayListen] = listenAddr
		cfg.Labels[LabelRelayControl] = ctlAddr
		if t.settings.RelayAddress != "" {
			cfg.Labels[LabelRelayAddress] = t.settings.RelayAddress
		}
		host.NetworkMode = network.NetworkHost
		netCfg = nil
	}
	created, err := t.eng.ContainerCreate(ctx, cfg, host, netCfg, nil, name)
	if err != nil {
		return fmt.Errorf("creating relay container %s: %w", name, err)
	}
	if err := t.eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		_ = t.eng.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
		return fmt.Errorf("starting relay container %s: %w", name, err)
	}
	if err := t.waitReady(ctx, true); err != nil {
		// A relay that never answered (its address taken meanwhile, say)
		// would only restart in a loop: take it away, as if never made.
		_ = t.eng.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		return err
	}
	t.notify(fmt.Sprintf("started relay container %s for %s", name, t.svc.Name))
	return nil
}

// hostAddrs picks the addresses a relay in the host's network namespace
// listens on: the data address (--relay-address, default 127.0.0.1, and
// --relay-port or a free port) and its control address on 127.0.0.1. The
// data address is checked free here, so a taken one fails the deploy with a
// clear reason before any container exists.
func (t *Relay) hostAddrs() (listen, control string, err error) {
	ip := t.settings.RelayAddress
	if ip == "" && t.shared != nil {
		// Across hosts nginx reaches each host's relay at that host's
		// address; a default 127.0.0.1 would be nginx's own loopback.
		return "", "", deploy.Classify(deploy.ErrInvalid, "service %s: a relay shared across hosts needs the host's address that nginx reaches: give relay-address=IP in the hosts file or --relay-address HOST=IP", t.svc.Key)
	}
	if ip == "" {
		ip = "127.0.0.1"
	}
	port := t.settings.RelayPort
	elsewhere := !addressHere(ip)
	switch {
	case port == 0 && elsewhere:
		return "", "", fmt.Errorf("relay address %s is not an address of this machine, so baton cannot pick a free port on it: give --relay-port", ip)
	case port == 0:
		if port, err = freePort(ip); err != nil {
			return "", "", err
		}
	}
	listen = net.JoinHostPort(ip, strconv.Itoa(port))
	// The check can only be made where the address lives: an engine whose
	// host is another machine (or network namespace) has the address, this
	// process does not; there a relay that cannot listen shows as one that
	// keeps restarting, which the caller detects.
	if !elsewhere {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return "", "", fmt.Errorf("the relay cannot listen on %s (--relay-address/--relay-port): %w", listen, err)
		}
		_ = ln.Close()
	}
	ctlPort, err := freePort("127.0.0.1")
	if err != nil {
		return "", "", err
	}
	return listen, net.JoinHostPort("127.0.0.1", strconv.Itoa(ctlPort)), nil
}

// The relay's limits. It holds a few goroutines and buffers per connection
// (measured: 14 MiB at rest, 19 MiB with 200 control connections), so
// 128 MiB leaves room for a burst of traffic; its threads stay well under
// 256 tasks.
const (
	relayMemoryLimit = 128 << 20
	relayPidsLimit   = 256
)

// hardenRelay takes from the relay container everything it does not need:
// it binds unprivileged ports as nobody, writes only its state volume, and
// never gains a privilege; its memory and task count are bounded, so a flood
// cannot take the host's memory with it.
func hardenRelay(host *container.HostConfig) {
	host.CapDrop = []string{"ALL"}
	host.SecurityOpt = []string{"no-new-privileges:true"}
	host.ReadonlyRootfs = true
	host.Memory = relayMemoryLimit
	host.MemorySwap = relayMemoryLimit // no swap on top
	pids := int64(relayPidsLimit)
	host.PidsLimit = &pids
}

// RelayVolume is the state volume of a service's relay. Relays of earlier
// versions ran as root on a volume named like the container, whose files
// nobody cannot write; a new name gets a fresh volume owned by the relay's
// user.
func RelayVolume(serviceKey string) string { return RelayName(serviceKey) + "-state" }

// waitReady waits for a just-started relay to answer on its control socket.
// For a fresh container (created just now) a restart means it exits at
// start, which waiting would not change.
func (t *Relay) waitReady(ctx context.Context, fresh bool) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		_, err := t.status(ctx)
		if err == nil {
			return nil
		}
		t.ctl = nil // the TCP control port may just not be listening yet
		if c, ierr := t.eng.ContainerInspect(ctx, RelayName(t.svc.Key)); fresh && ierr == nil && c.State != nil && (c.RestartCount > 0 || c.State.Restarting) {
			// It exits at start (its address taken, say): waiting longer
			// would only watch it restart.
			return fmt.Errorf("relay container %s exits at start (exit code %d, restarted %d times; docker logs %s says why)", RelayName(t.svc.Key), c.State.ExitCode, c.RestartCount, RelayName(t.svc.Key))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("relay container %s did not answer on its control socket: %w", RelayName(t.svc.Key), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (t *Relay) status(ctx context.Context) (relay.Status, error) {
	ctl, err := t.control(ctx)
	if err != nil {
		return relay.Status{}, err
	}
	return ctl.Status(ctx)
}

func (t *Relay) set(ctx context.Context, target relay.Target) (relay.Status, error) {
	ctl, err := t.control(ctx)
	if err != nil {
		return relay.Status{}, err
	}
	return ctl.Set(ctx, target)
}

func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port for the relay on %s: %w", ip, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// HostRelayServer is the address an nginx on another machine reaches relay
// container c at (its published address and port), and whether it has one:
// a rollout across hosts lists every host's relay in one upstream file.
func HostRelayServer(c container.InspectResponse) (string, bool) {
	if c.Config == nil {
		return "", false
	}
	// A relay in the host's network namespace (issue 13's data path) names
	// the address it listens on.
	if listen := c.Config.Labels["baton.relay-listen"]; listen != "" {
		return listen, true
	}
	if c.Config.Labels[LabelRelayPort] == "" {
		return "", false
	}
	return net.JoinHostPort(relayHostIP(c.Config.Labels[LabelRelayAddress]), c.Config.Labels[LabelRelayPort]), true
}

// addressHere reports whether ip is an address of this machine (of this
// process's network namespace), where a listener can be tried.
func addressHere(ip string) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return !errors.Is(err, syscall.EADDRNOTAVAIL)
	}
	_ = ln.Close()
	return true
}
