package deploy

import (
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
)

// derivePort picks the app's port when the user did not name one: the only
// TCP port the container exposes, or else the only one it publishes. 0 means
// it cannot tell.
func derivePort(c container.InspectResponse) int {
	if c.Config != nil {
		if p, ok := onlyTCP(keys(c.Config.ExposedPorts)); ok {
			return p
		}
	}
	if c.HostConfig != nil {
		bound := make([]nat.Port, 0, len(c.HostConfig.PortBindings))
		for p := range c.HostConfig.PortBindings {
			bound = append(bound, p)
		}
		if p, ok := onlyTCP(bound); ok {
			return p
		}
	}
	return 0
}

func onlyTCP(ports []nat.Port) (int, bool) {
	found := 0
	for _, p := range ports {
		if p.Proto() != "tcp" {
			continue
		}
		if found != 0 {
			return 0, false
		}
		found = p.Int()
	}
	return found, found != 0
}

func keys(m nat.PortSet) []nat.Port {
	out := make([]nat.Port, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	return out
}

// describeExposed lists the container's exposed ports for an error message.
func describeExposed(c container.InspectResponse) string {
	var ports []string
	if c.Config != nil {
		for p := range c.Config.ExposedPorts {
			ports = append(ports, string(p))
		}
	}
	if len(ports) == 0 {
		return "no ports"
	}
	sort.Strings(ports)
	return strings.Join(ports, ", ")
}
