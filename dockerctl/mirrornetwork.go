package dockerctl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
)

// MirrorNetwork creates the internal network mirror (with labels) if it does
// not exist, and attaches to it every running container of network real,
// except those in skip, under the names they have on real (aliases and
// container name). A container that must not publish yet (its host ports are
// still held by the container it replaces) can join the mirror and reach its
// peers by name, since an internal network never becomes a gateway and so
// publishes nothing. Attaching a running container to one more network does
// not disturb its connections. Running it again is harmless.
func (c *Client) MirrorNetwork(ctx context.Context, real, mirror string, labels map[string]string, skip ...string) error {
	src, err := c.NetworkInspect(ctx, real, network.InspectOptions{})
	if err != nil {
		return fmt.Errorf("inspecting network %s: %w", real, err)
	}
	dst, err := c.NetworkInspect(ctx, mirror, network.InspectOptions{})
	switch {
	case errdefs.IsNotFound(err):
		if _, err := c.NetworkCreate(ctx, mirror, network.CreateOptions{Driver: "bridge", Internal: true, Labels: labels}); err != nil && !errdefs.IsConflict(err) {
			return fmt.Errorf("creating network %s: %w", mirror, err)
		}
	case err != nil:
		return fmt.Errorf("inspecting network %s: %w", mirror, err)
	case !dst.Internal:
		return fmt.Errorf("network %s exists but is not internal; remove it (docker network rm %s), baton recreates it", mirror, mirror)
	}
	for id := range src.Containers {
		if slices.ContainsFunc(skip, func(s string) bool { return s != "" && (s == id || strings.TrimPrefix(s, "/") == id) }) {
			continue
		}
		if _, ok := dst.Containers[id]; ok {
			continue
		}
		peer, err := c.ContainerInspect(ctx, id)
		if errdefs.IsNotFound(err) {
			continue // gone since the network was inspected
		}
		if err != nil {
			return fmt.Errorf("inspecting container %s on network %s: %w", id[:min(12, len(id))], real, err)
		}
		if peer.State == nil || !peer.State.Running || slices.Contains(skip, strings.TrimPrefix(peer.Name, "/")) {
			continue
		}
		ep := &network.EndpointSettings{Aliases: []string{strings.TrimPrefix(peer.Name, "/")}}
		if on := peer.NetworkSettings.Networks[real]; on != nil {
			for _, a := range on.Aliases {
				if !slices.Contains(ep.Aliases, a) {
					ep.Aliases = append(ep.Aliases, a)
				}
			}
		}
		if err := c.NetworkConnect(ctx, mirror, id, ep); err != nil && !alreadyAttached(err) {
			return fmt.Errorf("attaching %s to network %s: %w", strings.TrimPrefix(peer.Name, "/"), mirror, err)
		}
	}
	return nil
}

// RemoveNetworks detaches every container from each network that carries all
// of labels and removes the network. It returns the names it removed.
func (c *Client) RemoveNetworks(ctx context.Context, labels map[string]string) ([]string, error) {
	args := filters.NewArgs()
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	list, err := c.NetworkList(ctx, network.ListOptions{Filters: args})
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	var removed []string
	var errs []error
	for _, n := range list {
		full, err := c.NetworkInspect(ctx, n.ID, network.InspectOptions{})
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("inspecting network %s: %w", n.Name, err))
			continue
		}
		for id := range full.Containers {
			if err := c.NetworkDisconnect(ctx, n.ID, id, true); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("detaching %s from network %s: %w", id[:min(12, len(id))], n.Name, err))
			}
		}
		if err := c.NetworkRemove(ctx, n.ID); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing network %s: %w", n.Name, err))
			continue
		}
		removed = append(removed, n.Name)
	}
	return removed, errors.Join(errs...)
}

// alreadyAttached tells the engine's "endpoint ... already exists" answer
// (403 on 20.10, a conflict on some later engines) from real failures.
func alreadyAttached(err error) bool {
	return (errdefs.IsForbidden(err) || errdefs.IsConflict(err)) && strings.Contains(err.Error(), "already exists")
}
