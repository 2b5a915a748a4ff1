package deploy

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/dockerctl"
)

// mirrorsFor lists the networks a new container warms up on a mirror of
// (dockerctl.MirrorNetwork): one warmed up isolated (its host ports are
// still the old container's) joins its real networks only at the handover,
// so without a mirror it could not reach its database or cache by name
// while warming up. The default bridge has no names to resolve, so it gets
// none.
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

// joinWarmNetworks attaches the new container to the mirror of each of its
// user-defined networks, where the peers it would meet on the real one are.
// It joins without its aliases: peers (an nginx resolving the service's
// name, say) must not find the warming container by the service's name;
// probes reach it on its service's network. It stays attached after the deploy,
// so connections it opened while warming up keep working.
func (r *run) joinWarmNetworks(ctx context.Context) error {
	for _, a := range mirrorsFor(r.plan.nets) {
		real := a.Name
		if a.Endpoint != nil && a.Endpoint.NetworkID != "" {
			real = a.Endpoint.NetworkID
		}
		mirror, err := r.d.Engine.MirrorNetwork(ctx, real, r.svc.Key, r.rec.OldID, r.rec.NewID)
		if err != nil {
			return fmt.Errorf("copying network %s for the warm-up: %w", a.Name, err)
		}
		r.event(PhaseCreate, r.rec.NewName, "joining %s to %s, an internal copy of network %s, so it reaches its peers while it warms up", r.rec.NewName, mirror, a.Name)
		if err := r.d.Engine.NetworkConnect(ctx, mirror, r.rec.NewID, &network.EndpointSettings{}); err != nil {
			return fmt.Errorf("connecting %s to network %s: %w", r.rec.NewName, mirror, err)
		}
	}
	return nil
}
