package deploy

import (
	"strings"

	"github.com/docker/docker/api/types/container"
)

// Service identifies what baton keeps serving: the unit a lock, a deploy
// record and a relay belong to.
type Service struct {
	Key  string // stable identity: the container name for a plain container
	Name string // the name the serving container has, and keeps across deploys
}

// ServiceOf derives the service of a running container. A container created
// by baton carries baton.service; any other is its own service, by name.
func ServiceOf(c container.InspectResponse) Service {
	name := strings.TrimPrefix(c.Name, "/")
	if c.Config != nil {
		if k := c.Config.Labels[LabelService]; k != "" {
			// A replacement is renamed to the service's name when it takes
			// over, so the label names both.
			return Service{Key: k, Name: k}
		}
	}
	return Service{Key: name, Name: name}
}
