package dockerctl

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
)

// Each service baton manages has a network of its own,
// baton-svc-<service>: its containers, its relay and the nginx container
// that serves it are attached there, and nothing else. New containers warm
// up on it, and the host, the relay, probes and an nginx container reach an
// app container through it whatever its other networks are. Being internal,
// it never becomes a container's gateway, so joining it publishes no ports
// and routes nothing outside; and since it is per service, two services
// isolated from each other (two compose projects, say) stay isolated: one
// flat network for all of them would let each reach the other on every port.
const (
	serviceNetPrefix = "baton-svc-"
	// kernelNetPrefix names a service's kernel network (see KernelNetwork).
	kernelNetPrefix = "baton-kp-"
	// LegacyNetwork is the one network earlier versions joined every
	// service to. A host set up by them moves over service by service (see
	// the traffic package), and the network is removed once nothing uses it.
	LegacyNetwork = "baton"
	// LabelNetworkFor names the service a network belongs to.
	LabelNetworkFor = "baton.network-for"
	// RoleServiceNetwork is a service network's baton.role.
	RoleServiceNetwork = "service-network"
	// RoleKernelNetwork is a kernel network's baton.role.
	RoleKernelNetwork = "kernel-network"
)

var unsafeNetName = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// ServiceNetwork is the name of service key's network.
func ServiceNetwork(serviceKey string) string {
	return serviceNetPrefix + unsafeNetName.ReplaceAllString(serviceKey, "_")
}

// KernelNetwork is the name of service key's kernel network: an internal
// network that only the kernel path (--kernel-path) uses. Its gateway is the
// source of the connections the kernel carries to the serving container,
// and the container's address on it their destination, so no other flow
// (the relay's dials, probes, docker-proxy, all on the service's network)
// ever shares a 4-tuple with them. Since Linux 6.x derives the TCP
// timestamp offset from the whole 4-tuple, a SYN on a tuple another kind of
// flow left in TIME_WAIT in the container may carry an older timestamp and
// be dropped by PAWS (docs/NOTES.md).
func KernelNetwork(serviceKey string) string {
	return kernelNetPrefix + unsafeNetName.ReplaceAllString(serviceKey, "_")
}

// IsServiceNetwork tells a service's network (the relay's, probes') from
// baton's other networks.
func IsServiceNetwork(name string) bool { return strings.HasPrefix(name, serviceNetPrefix) }

// IsBatonNetwork tells baton's own networks (a service's, its kernel
// network, the legacy one) from the user's: a deploy never copies them onto
// a new container, which joins its own service's networks itself.
func IsBatonNetwork(name string) bool {
	return name == LegacyNetwork || strings.HasPrefix(name, serviceNetPrefix) || strings.HasPrefix(name, kernelNetPrefix)
}

// EnsureServiceNetwork creates service key's network if it does not exist
// and checks that an existing one is internal and belongs to that service.
// It returns the network's name.
func (c *Client) EnsureServiceNetwork(ctx context.Context, serviceKey string) (string, error) {
	return c.ensureOwnNetwork(ctx, ServiceNetwork(serviceKey), RoleServiceNetwork, serviceKey)
}

// EnsureKernelNetwork creates service key's kernel network if it does not
// exist and checks an existing one as EnsureServiceNetwork does. It returns
// the network's name.
func (c *Client) EnsureKernelNetwork(ctx context.Context, serviceKey string) (string, error) {
	return c.ensureOwnNetwork(ctx, KernelNetwork(serviceKey), RoleKernelNetwork, serviceKey)
}

// ensureOwnNetwork makes or checks one of baton's internal bridge networks
// for a service.
func (c *Client) ensureOwnNetwork(ctx context.Context, name, role, serviceKey string) (string, error) {
	n, err := c.NetworkInspect(ctx, name, network.InspectOptions{})
	if err == nil {
		return name, checkOwnNetwork(n, role, serviceKey)
	}
	if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspecting network %s: %w", name, err)
	}
	_, err = c.NetworkCreate(ctx, name, network.CreateOptions{
		Driver:   "bridge",
		Internal: true,
		Labels:   map[string]string{"baton.managed": "true", "baton.role": role, LabelNetworkFor: serviceKey},
	})
	if err != nil && !errdefs.IsConflict(err) {
		return "", fmt.Errorf("creating network %s: %w", name, err)
	}
	if err != nil { // created meanwhile by a concurrent run: check it
		if n, err = c.NetworkInspect(ctx, name, network.InspectOptions{}); err != nil {
			return "", fmt.Errorf("inspecting network %s: %w", name, err)
		}
		return name, checkOwnNetwork(n, role, serviceKey)
	}
	return name, nil
}

// checkOwnNetwork checks an existing network of baton's name for a service.
// A kernel network must also carry baton's own labels: baton changes its
// bridge's route_localnet, so one declared by someone else (a compose file
// naming a network baton-kp-web, say) is refused.
func checkOwnNetwork(n network.Inspect, role, serviceKey string) error {
	if role == RoleKernelNetwork && (n.Labels["baton.role"] != role || n.Labels["baton.managed"] != "true") {
		return fmt.Errorf("network %s exists but was not made by baton (labels baton.role=%q, baton.managed=%q); remove it (docker network rm %s) and baton recreates it", n.Name, n.Labels["baton.role"], n.Labels["baton.managed"], n.Name)
	}
	return checkServiceNetwork(n, serviceKey)
}

func checkServiceNetwork(n network.Inspect, serviceKey string) error {
	switch {
	case !n.Internal:
		return fmt.Errorf("network %s exists but is not internal; baton needs it internal so a warming container publishes nothing (remove it: docker network rm %s; baton recreates it)", n.Name, n.Name)
	case n.Labels[LabelNetworkFor] != serviceKey:
		return fmt.Errorf("network %s exists but is not service %s's network (label %s=%q); rename or remove it (docker network rm %s)", n.Name, serviceKey, LabelNetworkFor, n.Labels[LabelNetworkFor], n.Name)
	}
	return nil
}

// serviceNetworkMinAge keeps a just-made service network from being pruned
// by another run before the deploy that made it attaches anything.
const serviceNetworkMinAge = 10 * time.Minute

// pruneServiceNetworks removes the service networks no container uses any
// more, running or not (the service was removed), at least
// serviceNetworkMinAge old. It returns the names it removed.
func (c *Client) pruneServiceNetworks(ctx context.Context) ([]string, error) {
	var list []network.Summary
	for _, role := range []string{RoleServiceNetwork, RoleKernelNetwork} {
		l, err := c.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "baton.role="+role))})
		if err != nil {
			return nil, fmt.Errorf("listing networks: %w", err)
		}
		list = append(list, l...)
	}
	var removed []string
	var errs []error
	for _, n := range list {
		own := strings.HasPrefix(n.Name, serviceNetPrefix) || strings.HasPrefix(n.Name, kernelNetPrefix)
		if !own || time.Since(n.Created) < serviceNetworkMinAge {
			continue
		}
		full, err := c.NetworkInspect(ctx, n.ID, network.InspectOptions{})
		if err != nil || len(full.Containers) > 0 {
			continue
		}
		// A stopped container keeps its place on the network: removing the
		// network would keep it from starting again.
		users, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", n.ID))})
		if err != nil {
			errs = append(errs, fmt.Errorf("listing containers of network %s: %w", n.Name, err))
			continue
		}
		if len(users) > 0 {
			continue
		}
		if err := c.NetworkRemove(ctx, n.ID); err != nil && !errdefs.IsNotFound(err) {
			if inUse(err) {
				continue // a container joined it since the check: it is not unused
			}
			errs = append(errs, fmt.Errorf("removing network %s: %w", n.Name, err))
			continue
		}
		removed = append(removed, n.Name)
	}
	return removed, errors.Join(errs...)
}

// inUse tells a network removal refused because containers are attached
// (the engine answers 403 "has active endpoints"): a race with a deploy or
// a test that attached one after the check, not a failure.
func inUse(err error) bool {
	return errdefs.IsForbidden(err) || strings.Contains(err.Error(), "active endpoints")
}
