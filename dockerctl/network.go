package dockerctl

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
)

// BatonNetwork is baton's internal network. New containers warm up on it,
// and every container baton manages stays attached, because it is how the
// host, the relay, probes and an nginx container reach an app container
// whatever its other networks are. Being internal, it never becomes a
// container's gateway, so joining it publishes no ports and routes nothing
// outside.
const BatonNetwork = "baton"

// EnsureBatonNetwork creates baton's network if it does not exist and checks
// that an existing one is internal. It returns the network's name.
func (c *Client) EnsureBatonNetwork(ctx context.Context) (string, error) {
	n, err := c.NetworkInspect(ctx, BatonNetwork, network.InspectOptions{})
	if err == nil {
		if !n.Internal {
			return "", fmt.Errorf("network %s exists but is not internal; baton needs it internal so a warming container publishes nothing (remove it, baton recreates it)", BatonNetwork)
		}
		return BatonNetwork, nil
	}
	if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspecting network %s: %w", BatonNetwork, err)
	}
	_, err = c.NetworkCreate(ctx, BatonNetwork, network.CreateOptions{
		Driver:   "bridge",
		Internal: true,
		Labels:   map[string]string{"baton.managed": "true"},
	})
	if err != nil && !errdefs.IsConflict(err) {
		return "", fmt.Errorf("creating network %s: %w", BatonNetwork, err)
	}
	return BatonNetwork, nil
}
