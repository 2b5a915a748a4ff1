package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/dockerctl"
)

// RoleWarmNetwork marks the internal copies of a service's networks that a
// new container with fixed host ports warms up on (see mirrorsFor).
const (
	RoleWarmNetwork = "warm-network"
	LabelMirrorOf   = "baton.mirror-of" // the real network a warm network copies
)

// warmNetworkName is stable for a service and one of its networks, so an
// interrupted deploy's copy is found and reused or removed.
func warmNetworkName(serviceKey, real string) string {
	sum := sha256.Sum256([]byte(serviceKey + "\x00" + real))
	return "baton-warm-" + hex.EncodeToString(sum[:6])
}

// mirrorsFor lists the networks that need a warm copy: a container warmed up
// isolated (its host ports are still the old container's) joins its real
// networks only at the handover, so without a copy it could not reach its
// database or cache by name while warming up. The default bridge has no
// names to resolve, so it gets none.
func mirrorsFor(n networkPlan) []dockerctl.NetworkAttachment {
	if !n.Isolated {
		return nil
	}
	var out []dockerctl.NetworkAttachment
	for _, a := range n.AtHandover {
		if a.Name != "bridge" && a.Name != "default" {
			out = append(out, a)
		}
	}
	return out
}

// joinWarmNetworks attaches the new container to a warm copy of each of its
// user-defined networks, with the peers it would meet on the real one. It
// joins without its aliases: peers (an nginx resolving the service's name,
// say) must not find the warming container by the service's name; probes
// reach it on baton's network.
func (r *run) joinWarmNetworks(ctx context.Context) error {
	for _, a := range mirrorsFor(r.nets) {
		warm := warmNetworkName(r.svc.Key, a.Name)
		labels := map[string]string{LabelManaged: "true", LabelService: r.svc.Key, LabelRole: RoleWarmNetwork, LabelMirrorOf: a.Name}
		r.event(PhaseCreate, r.rec.NewName, "joining %s to %s, an internal copy of network %s, so it reaches its peers while it warms up", r.rec.NewName, warm, a.Name)
		if err := r.d.Engine.MirrorNetwork(ctx, a.Name, warm, labels, r.old.ID, r.rec.NewID); err != nil {
			return fmt.Errorf("copying network %s for the warm-up: %w", a.Name, err)
		}
		if err := r.d.Engine.NetworkConnect(ctx, warm, r.rec.NewID, &network.EndpointSettings{}); err != nil {
			return fmt.Errorf("connecting %s to network %s: %w", r.rec.NewName, warm, err)
		}
	}
	return nil
}

// removeWarmNetworks removes a service's warm networks: when a deploy ends
// whichever way, and when leftovers of a killed one are converged.
func (d *Deployer) removeWarmNetworks(ctx context.Context, svc Service) ([]string, error) {
	return d.Engine.RemoveNetworks(ctx, map[string]string{LabelService: svc.Key, LabelRole: RoleWarmNetwork})
}
