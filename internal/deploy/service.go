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

// ServiceOf derives the service of a container: its name, or for a
// replacement baton created and has not renamed yet (<service>-baton-<deploy
// id>), the service it replaces. The label alone never decides: an image can
// carry any baton.service, but not its container's name.
func ServiceOf(c container.InspectResponse) Service {
	name := strings.TrimPrefix(c.Name, "/")
	if c.Config != nil {
		k, id := c.Config.Labels[LabelService], c.Config.Labels[LabelDeployID]
		if k != "" && id != "" && name == k+"-baton-"+id {
			return Service{Key: k, Name: k}
		}
	}
	return Service{Key: name, Name: name}
}
