package dockerctl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
)

// Mirror networks let a container that must not publish yet (its host ports
// are still held by the container it replaces) reach its peers by name while
// it warms up: an internal copy of one of its networks, with that network's
// other containers attached under the names they have there. An internal
// network never becomes a gateway, so joining it publishes nothing.
//
// Each service has its own mirror of each of its networks. The service's own
// containers join it without their aliases (nothing must find a warming
// container by the service's name), so a mirror shared by two services would
// hide each from the other's warm-up.
//
// A mirror outlives the deploy that made it: connections the new container
// opened through it while warming up (a database pool) must keep working
// once it serves, and tearing the network down would cut them. It is
// removed once the network it copies is gone.
const (
	mirrorPrefix     = "baton-warm-"
	LabelMirrorOf    = "baton.mirror-of"    // the copied network's name
	LabelMirrorOfID  = "baton.mirror-of-id" // and ID, which survives a rename and tells a recreated network apart
	LabelMirrorFor   = "baton.mirror-for"   // the service whose warm-ups it serves
	labelMirrorRole  = "baton.role"
	mirrorRoleValue  = "warm-network"
	labelMirrorOwner = "baton.managed"
)

// MirrorName is the name of service owner's mirror of the network with this
// ID.
func MirrorName(owner, networkID string) string {
	sum := sha256.Sum256([]byte(owner + "\x00" + networkID))
	return mirrorPrefix + hex.EncodeToString(sum[:6])
}

// IsMirrorNetwork tells baton's mirrors from the user's networks.
func IsMirrorNetwork(name string) bool { return strings.HasPrefix(name, mirrorPrefix) }

// MirrorNetwork creates service owner's mirror of network real (name or ID)
// if it does not exist and attaches to it every running container of real,
// except the service's own (skip), under the names they have on real
// (aliases and container name). It returns the mirror's name. Running it
// again attaches what is missing.
func (c *Client) MirrorNetwork(ctx context.Context, real, owner string, skip ...string) (string, error) {
	src, err := c.NetworkInspect(ctx, real, network.InspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspecting network %s: %w", real, err)
	}
	mirror := MirrorName(owner, src.ID)
	dst, err := c.NetworkInspect(ctx, mirror, network.InspectOptions{})
	switch {
	case errdefs.IsNotFound(err):
		labels := map[string]string{labelMirrorOwner: "true", labelMirrorRole: mirrorRoleValue, LabelMirrorOf: src.Name, LabelMirrorOfID: src.ID, LabelMirrorFor: owner}
		if _, err := c.NetworkCreate(ctx, mirror, network.CreateOptions{Driver: "bridge", Internal: true, Labels: labels}); err != nil && !errdefs.IsConflict(err) {
			return "", fmt.Errorf("creating network %s: %w", mirror, err)
		}
	case err != nil:
		return "", fmt.Errorf("inspecting network %s: %w", mirror, err)
	case !dst.Internal:
		return "", fmt.Errorf("network %s exists but is not internal; remove it (docker network rm %s), baton recreates it", mirror, mirror)
	}
	for id := range src.Containers {
		if _, ok := dst.Containers[id]; ok || slices.Contains(skip, id) {
			continue
		}
		peer, err := c.ContainerInspect(ctx, id)
		if errdefs.IsNotFound(err) {
			continue // gone since the network was inspected
		}
		if err != nil {
			return "", fmt.Errorf("inspecting container %s on network %s: %w", shortID(id), real, err)
		}
		// A peer that is not plainly running is left alone: it cannot
		// serve the new container now, and a connect could fail on it.
		if peer.State == nil || !peer.State.Running || peer.State.Paused || peer.State.Restarting {
			continue
		}
		ep := &network.EndpointSettings{Aliases: []string{strings.TrimPrefix(peer.Name, "/")}}
		if on := peer.NetworkSettings.Networks[src.Name]; on != nil {
			for _, a := range on.Aliases {
				if !slices.Contains(ep.Aliases, a) {
					ep.Aliases = append(ep.Aliases, a)
				}
			}
		}
		err = c.NetworkConnect(ctx, mirror, id, ep)
		switch {
		case err == nil, AlreadyAttached(err), errdefs.IsNotFound(err): // attached, or the peer is gone
		default:
			return "", fmt.Errorf("attaching %s to network %s: %w", strings.TrimPrefix(peer.Name, "/"), mirror, err)
		}
	}
	return mirror, nil
}

// PruneMirrors removes the mirrors whose copied network no longer exists
// (a compose project taken down, a test's network removed): nothing can
// deploy onto such a network, so removing its mirror races with no deploy.
// It also removes the service networks of services that are gone. It
// returns the names it removed.
func (c *Client) PruneMirrors(ctx context.Context) ([]string, error) {
	removed, err := c.pruneMirrors(ctx)
	svcRemoved, svcErr := c.pruneServiceNetworks(ctx)
	return append(removed, svcRemoved...), errors.Join(err, svcErr)
}

func (c *Client) pruneMirrors(ctx context.Context) ([]string, error) {
	list, err := c.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelMirrorRole+"="+mirrorRoleValue))})
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
		if srcID := n.Labels[LabelMirrorOfID]; srcID == "" {
			// Made by a development version that removed mirrors after each
			// deploy: go once nothing uses it.
			if len(full.Containers) > 0 {
				continue
			}
		} else if _, err := c.NetworkInspect(ctx, srcID, network.InspectOptions{}); !errdefs.IsNotFound(err) {
			if err != nil {
				errs = append(errs, fmt.Errorf("inspecting network %s: %w", n.Labels[LabelMirrorOf], err))
			}
			continue
		}
		for id := range full.Containers {
			if err := c.NetworkDisconnect(ctx, n.ID, id, true); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("detaching %s from network %s: %w", shortID(id), n.Name, err))
			}
		}
		if err := c.NetworkRemove(ctx, n.ID); err != nil && !errdefs.IsNotFound(err) {
			if inUse(err) {
				continue
			}
			errs = append(errs, fmt.Errorf("removing network %s: %w", n.Name, err))
			continue
		}
		removed = append(removed, n.Name)
	}
	return removed, errors.Join(errs...)
}

// AlreadyAttached tells the engine's "endpoint ... already exists" answer
// (403 on 20.10, a conflict on some later engines) from real failures.
func AlreadyAttached(err error) bool {
	return (errdefs.IsForbidden(err) || errdefs.IsConflict(err)) && strings.Contains(err.Error(), "already exists")
}
