package deploy

import (
	"slices"

	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/dockerctl"
)

// networkPlan says how the new container joins its networks.
//
// Docker publishes a container's host ports through its gateway network, and
// a host port can be published by one container at a time. A container that
// is started on an internal network only has no gateway, so it publishes
// nothing, yet the host, the relay and an nginx container on that network can
// reach it by IP. So when the old container holds fixed host ports (or static
// IPs), the new one warms up on its service's internal network alone (baton's
// network for it, dockerctl.ServiceNetwork) and joins its
// real networks after the old one has stopped: the handover. Otherwise it
// joins them before it starts, so it can reach its database while warming up.
//
// Never try a connect that will fail on a held port: measured on 20.10, a
// failed connect leaves the endpoint half-made in the container's sandbox and
// every later connect to that network fails until the container restarts.
type networkPlan struct {
	NetworkMode string                               // HostConfig.NetworkMode at create
	AtCreate    map[string]*network.EndpointSettings // the one endpoint the 1.41 API takes at create
	BeforeStart []dockerctl.NetworkAttachment        // connected before start
	AtHandover  []dockerctl.NetworkAttachment        // connected after the old container stopped
	Isolated    bool                                 // warms up on the service's network only
	UseBaton    bool                                 // attached to the service's network (everything but network mode none)
}

// planNetworks is pure: spec is the clone of the old container, batonNet
// the service's network name, serviceName the name the service keeps (added as an
// alias on user-defined networks so the name resolves to the new container
// once the old one stops, before the rename).
func planNetworks(spec *dockerctl.CloneSpec, batonNet, serviceName string) networkPlan {
	mode := string(spec.HostConfig.NetworkMode)
	if mode == "none" {
		return networkPlan{NetworkMode: "none"}
	}
	var real []dockerctl.NetworkAttachment
	for _, a := range spec.Networks {
		if a.Name == batonNet {
			continue
		}
		a.Endpoint = withAlias(a.Name, a.Endpoint, serviceName)
		real = append(real, a)
	}
	hostPorts := hasHostPortExclusive(spec)
	p := networkPlan{UseBaton: true, AtCreate: map[string]*network.EndpointSettings{}}
	if hostPorts {
		p.Isolated = true
		p.NetworkMode = batonNet
		p.AtCreate[batonNet] = &network.EndpointSettings{}
		p.AtHandover = real
		return p
	}
	// Keep the user's primary network primary when it can be joined now.
	primary := -1
	for i, a := range real {
		if a.Name == mode && !a.Exclusive {
			primary = i
		}
	}
	if primary < 0 {
		p.NetworkMode = batonNet
		p.AtCreate[batonNet] = &network.EndpointSettings{}
	} else {
		p.NetworkMode = real[primary].Name
		p.AtCreate[real[primary].Name] = real[primary].Endpoint
		p.BeforeStart = append(p.BeforeStart, dockerctl.NetworkAttachment{Name: batonNet, Endpoint: &network.EndpointSettings{}})
	}
	for i, a := range real {
		switch {
		case i == primary:
		case a.Exclusive:
			p.AtHandover = append(p.AtHandover, a)
		default:
			p.BeforeStart = append(p.BeforeStart, a)
		}
	}
	return p
}

func hasHostPortExclusive(spec *dockerctl.CloneSpec) bool {
	for _, bindings := range spec.HostConfig.PortBindings {
		for _, b := range bindings {
			if b.HostPort != "" && b.HostPort != "0" {
				return true
			}
		}
	}
	return false
}

// withAlias returns ep with alias added, on user-defined networks only (the
// default bridge takes no aliases).
func withAlias(netName string, ep *network.EndpointSettings, alias string) *network.EndpointSettings {
	out := &network.EndpointSettings{}
	if ep != nil {
		c := *ep
		c.Aliases = slices.Clone(ep.Aliases)
		out = &c
	}
	if netName == "bridge" || netName == "default" || alias == "" {
		return out
	}
	if !slices.Contains(out.Aliases, alias) {
		out.Aliases = append(out.Aliases, alias)
	}
	return out
}
