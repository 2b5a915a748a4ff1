package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/baton-sh/baton/dockerctl"
)

// labels returns the test label plus extra.
func labels(extra map[string]string) map[string]string {
	l := map[string]string{Label: "1"}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

// SubnetNetwork creates a bridge network with a /24 of its own, picked at
// random in 10.128.0.0/9 (another on overlap with networks other tests
// hold), so containers on it can have static IPs. It returns the name and
// the "10.x.y." prefix of its addresses; the network goes at cleanup.
func SubnetNetwork(t TB, cli *client.Client) (name, prefix string) {
	t.Helper()
	name = UniqueName("baton-test-net-")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var err error
	for range 8 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		prefix = fmt.Sprintf("10.%d.%d.", 128+int(b[0])%127, b[1])
		if _, err = cli.NetworkCreate(ctx, name, network.CreateOptions{
			Driver: "bridge", Labels: labels(nil),
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: prefix + "0/24"}}},
		}); err == nil {
			t.Cleanup(func() { removeNetwork(t, cli, name) })
			return name, prefix
		}
	}
	t.Fatalf("network %s: create with a subnet of its own: %v", name, err)
	return "", ""
}

// Network creates a bridge network labelled baton.test=1 (name "" picks a
// unique one) and removes it in a cleanup. It returns the name.
func Network(t TB, cli *client.Client, name string, internal bool) string {
	t.Helper()
	if name == "" {
		name = UniqueName("baton-test-net-")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := cli.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "bridge", Internal: internal, Labels: labels(nil),
	}); err != nil {
		t.Fatalf("network %s: create: %v", name, err)
	}
	t.Cleanup(func() { removeNetwork(t, cli, name) })
	return name
}

// removeNetwork disconnects whatever the test left attached (containers the
// code under test made and did not remove) so the network can go.
func removeNetwork(t TB, cli *client.Client, name string) {
	ctx, cancel := cleanupContext(t)
	defer cancel()
	nw, err := cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("network %s: inspect: %v", name, err)
		return
	}
	if err := detachAndRemoveNetwork(ctx, cli, nw.ID); err != nil {
		t.Errorf("network %s: remove: %v", name, err)
	}
	// baton's warm-up copies of the network would otherwise wait for the
	// next baton run to prune them, holding address pools meanwhile.
	mirrors, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", dockerctl.LabelMirrorOfID+"="+nw.ID))})
	if err != nil {
		t.Errorf("network %s: listing its copies: %v", name, err)
		return
	}
	for _, m := range mirrors {
		removeNetwork(t, cli, m.Name)
	}
}

// RunOpts says how RunDemo runs a container.
type RunOpts struct {
	Name    string            // default: a unique baton-test-demo-… name
	Image   string            // required
	Network string            // network to attach at create (default: the daemon's bridge)
	Aliases []string          // DNS aliases on Network
	Publish []string          // `docker run -p` specs, e.g. "127.0.0.1::8080"
	Env     []string          // KEY=value
	Labels  map[string]string // added to baton.test=1
	Cmd     []string          // arguments after the image's entrypoint
	// MacAddress is `docker run --mac-address`: on Network (its endpoint
	// from API 1.44, the container-wide field before, as the CLI does).
	MacAddress string
	// IPv4Address is `docker run --ip` on Network (a network with a subnet
	// of its own: SubnetNetwork).
	IPv4Address string
}

// RunDemo creates and starts a container (any image, typically a DemoImage)
// and force-removes it in a cleanup. It returns the container ID without
// waiting for the app: use WaitHealthy or WaitHTTP.
func RunDemo(t TB, cli *client.Client, opts RunOpts) string {
	t.Helper()
	if opts.Image == "" {
		t.Fatalf("RunDemo: no image")
	}
	if opts.Name == "" {
		opts.Name = UniqueName("baton-test-demo-")
	}
	exposed, bindings, err := nat.ParsePortSpecs(opts.Publish)
	if err != nil {
		t.Fatalf("container %s: ports %v: %v", opts.Name, opts.Publish, err)
	}
	cfg := &container.Config{
		Image:        opts.Image,
		Env:          opts.Env,
		Labels:       labels(opts.Labels),
		Cmd:          opts.Cmd,
		ExposedPorts: exposed,
	}
	hostCfg := &container.HostConfig{PortBindings: bindings}
	var netCfg *network.NetworkingConfig
	if opts.Network != "" {
		hostCfg.NetworkMode = container.NetworkMode(opts.Network)
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			opts.Network: {Aliases: opts.Aliases},
		}}
	}
	if opts.IPv4Address != "" {
		if netCfg == nil {
			t.Fatalf("container %s: a static IP needs a Network", opts.Name)
		}
		netCfg.EndpointsConfig[opts.Network].IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: opts.IPv4Address}
	}
	if opts.MacAddress != "" {
		if netCfg != nil && versions.GreaterThanOrEqualTo(cli.ClientVersion(), "1.44") {
			netCfg.EndpointsConfig[opts.Network].MacAddress = opts.MacAddress
		} else {
			cfg.MacAddress = opts.MacAddress //nolint:staticcheck // SA1019: the form before API 1.44
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	created, err := cli.ContainerCreate(ctx, cfg, hostCfg, netCfg, nil, opts.Name)
	if err != nil {
		t.Fatalf("container %s: create: %v", opts.Name, err)
	}
	t.Cleanup(func() { removeContainer(t, cli, created.ID) })
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("container %s: start: %v", opts.Name, err)
	}
	return created.ID
}

// removeContainer force-removes a container, ignoring one already gone.
func removeContainer(t TB, cli *client.Client, id string) {
	ctx, cancel := cleanupContext(t)
	defer cancel()
	err := cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("container %s: remove: %v", id, err)
	}
}

// ContainerIP returns the container's IPv4 address on the named network
// ("" means its only network).
func ContainerIP(t TB, cli *client.Client, id, networkName string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	info, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatalf("container %s: inspect: %v", id, err)
	}
	nets := info.NetworkSettings.Networks
	if networkName == "" {
		if len(nets) != 1 {
			t.Fatalf("container %s: on %d networks, name one", id, len(nets))
		}
		for n := range nets {
			networkName = n
		}
	}
	ep, ok := nets[networkName]
	if !ok || ep.IPAddress == "" {
		t.Fatalf("container %s: no address on network %s", id, networkName)
	}
	return ep.IPAddress
}

// HostAddr returns the host address ("127.0.0.1:PORT") that a container
// port such as "8080/tcp" is published on.
func HostAddr(t TB, cli *client.Client, id, port string) string {
	t.Helper()
	if !strings.Contains(port, "/") {
		port += "/tcp"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	info, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatalf("container %s: inspect: %v", id, err)
	}
	for _, b := range info.NetworkSettings.Ports[nat.Port(port)] {
		ip := b.HostIP
		if ip == "" || ip == "0.0.0.0" {
			ip = "127.0.0.1"
		}
		if strings.Contains(ip, ":") { // the IPv6 twin of a 0.0.0.0 binding
			continue
		}
		return net.JoinHostPort(ip, b.HostPort)
	}
	t.Fatalf("container %s: port %s is not published", id, port)
	return ""
}

// WaitHealthy waits until Docker reports the container healthy, failing the
// test if it turns unhealthy, stops or the timeout passes. The image must
// have a HEALTHCHECK (DemoImageOpts.HealthCheck).
func WaitHealthy(t TB, cli *client.Client, id string, timeout time.Duration) {
	t.Helper()
	if err := waitHealthy(t.Context(), cli, id, timeout); err != nil {
		t.Fatalf("%v", err)
	}
}

func waitHealthy(ctx context.Context, cli *client.Client, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Subscribe first, then look at the state, so no transition falls between.
	msgs, errs := cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("container", id),
	)})
	info, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("container %s: inspect: %w", id, err)
	}
	if info.State == nil || info.State.Health == nil {
		return fmt.Errorf("container %s: has no healthcheck", id)
	}
	if !info.State.Running {
		return fmt.Errorf("container %s: not running (%s, exit code %d)", id, info.State.Status, info.State.ExitCode)
	}
	switch info.State.Health.Status {
	case container.Healthy:
		return nil
	case container.Unhealthy:
		return fmt.Errorf("container %s: unhealthy", id)
	}
	for {
		select {
		case m := <-msgs:
			switch {
			case m.Action == events.ActionHealthStatusHealthy:
				return nil
			case m.Action == events.ActionHealthStatusUnhealthy:
				return fmt.Errorf("container %s: unhealthy", id)
			case m.Action == events.ActionDie:
				return fmt.Errorf("container %s: died (exit code %s) before turning healthy", id, m.Actor.Attributes["exitCode"])
			}
		case err := <-errs:
			if ctx.Err() != nil {
				return fmt.Errorf("container %s: not healthy after %s: %w", id, timeout, ctx.Err())
			}
			return fmt.Errorf("container %s: events: %w", id, err)
		}
	}
}
