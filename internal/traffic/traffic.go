// Package traffic holds the ways baton moves a service's traffic from the
// old container to the new one:
//
//   - relay: nginx proxies to baton's relay, a small L4 proxy in its own
//     container; a switch is one control call, no nginx reload, and the relay
//     counts the old container's connections to know when it has drained.
//   - nginx: baton rewrites the service's upstream file to the new
//     container's address and reloads nginx (on the host or in a container).
//   - none: no proxy control; the published port moves when the old
//     container stops.
package traffic

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/kernelpath"
)

// Engine is what traffic control needs from Docker; *dockerctl.Client
// satisfies it.
type Engine interface {
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerKill(ctx context.Context, containerID, signal string) error
	ContainerTop(ctx context.Context, containerID string, arguments []string) (container.TopResponse, error)
	NetworkConnect(ctx context.Context, networkID, containerID string, config *network.EndpointSettings) error
	NetworkDisconnect(ctx context.Context, networkID, containerID string, force bool) error
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
	NetworkRemove(ctx context.Context, networkID string) error
	Exec(ctx context.Context, containerID string, argv []string) (dockerctl.ExecResult, error)
	EnsureSelfImage(ctx context.Context) (string, error)
	EnsureServiceNetwork(ctx context.Context, serviceKey string) (string, error)
	EnsureKernelNetwork(ctx context.Context, serviceKey string) (string, error)
	CopyToContainer(ctx context.Context, containerID, dstPath string, content io.Reader, options container.CopyToContainerOptions) error
	CopyFromContainer(ctx context.Context, containerID, srcPath string) (io.ReadCloser, container.PathStat, error)
}

// Factory builds the Traffic for a service; it is a deploy.TrafficFactory.
type Factory struct {
	Engine Engine
	Log    *slog.Logger
	// RelayImage overrides the image the relay runs (default: one built
	// from this baton binary).
	RelayImage string
	// Notify receives human-readable notes about what was set up.
	Notify func(msg string)
	// SharedUpstream, if set, is given the relay servers of this engine and
	// returns every server the upstream file lists: one service on several
	// hosts behind one nginx shares one file, and a deploy on one host must
	// keep the other hosts' relays in it.
	SharedUpstream func(own []string) []string
	// Remote says the engine is on another machine: its containers'
	// addresses are not reachable from here, so the relay is controlled
	// through DialVia (docker exec into the relay container) and an nginx
	// container's upstream file is read and written through the Docker API.
	Remote bool
	// DialVia connects to addr from inside container via (see
	// dockerctl.Client.DialVia); required when Remote.
	DialVia func(ctx context.Context, via, addr string) (net.Conn, error)
	// Kernel installs the kernel path's rules (--kernel-path); nil means
	// this host's iptables.
	Kernel *kernelpath.Table
}

// New returns the Traffic for s.
func (f *Factory) New(ctx context.Context, svc deploy.Service, s deploy.Settings) (deploy.Traffic, error) {
	log := f.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	notify := f.Notify
	if notify == nil {
		notify = func(string) {}
	}
	switch s.TrafficMode() {
	case "none":
		return None{}, nil
	case "nginx":
		// Without the relay the file lists this host's container only: a
		// rollout's shared file must not be rewritten that way, by a deploy
		// on one host (--relay=false) or by a rollout whose host turned
		// the relay off (a container's baton.relay=false label).
		if f.SharedUpstream != nil {
			return nil, deploy.Classify(deploy.ErrInvalid, "service %s: the relay is off (relay=false), but across hosts nginx balances over each host's relay: deploy it with the relay", svc.Key)
		}
		n := f.nginxControl(s, log, notify)
		if err := n.checkNotShared(svc.Key); err != nil {
			return nil, err
		}
		return &Nginx{ctl: n, eng: f.Engine, svc: svc, log: log, notify: notify}, nil
	case "relay":
		n := f.nginxControl(s, log, notify)
		n.shared = f.SharedUpstream != nil
		if err := n.checkNotShared(svc.Key); err != nil {
			return nil, err
		}
		r := &Relay{
			eng: f.Engine, svc: svc, settings: s, image: f.RelayImage,
			nginx: n, log: log, notify: notify,
			shared: f.SharedUpstream,
		}
		if f.Remote {
			r.dialVia = f.DialVia
		}
		if !s.KernelPath {
			return r, nil
		}
		if f.Remote || f.SharedUpstream != nil {
			// The rules go in the firewall of the engine's host, which
			// baton reaches through a helper container there: a host
			// of a rollout may be another machine, or an engine here
			// in a network namespace of its own (its unix socket tells
			// nothing of that), and the helper is in the engine's own
			// by construction. nginx reaches the relay on an address
			// of that host (a loopback route would need that host's
			// nginx and route_localnet, which the helper does not
			// touch).
			if s.NginxContainer != "" {
				return nil, deploy.Classify(deploy.ErrInvalid, "service %s: --kernel-path for an nginx container needs baton on the engine's own host (the rule goes in that container's network namespace); drop --kernel-path", svc.Key)
			}
			if a, err := netip.ParseAddr(s.RelayAddress); err != nil || a.IsLoopback() {
				return nil, deploy.Classify(deploy.ErrInvalid, "service %s: --kernel-path on an engine on another machine needs the relay on the address of that host that nginx reaches (--relay-address, or relay-address= in the hosts file); drop --kernel-path or give it", svc.Key)
			}
			return &KernelRelay{Relay: r, remote: &remoteKernel{eng: f.Engine, image: f.RelayImage}}, nil
		}
		tbl := f.Kernel
		if tbl == nil {
			tbl = kernelpath.NewTable(kernelpath.ExecRunner{})
		}
		return &KernelRelay{Relay: r, table: tbl}, nil
	}
	return nil, fmt.Errorf("unknown traffic mode %q", s.TrafficMode())
}

func (f *Factory) nginxControl(s deploy.Settings, log *slog.Logger, notify func(string)) *nginxControl {
	n := newNginxControl(f.Engine, s, log, notify)
	n.throughContainer = f.Remote && n.container != ""
	return n
}
