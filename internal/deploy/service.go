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

// The labels Swarm puts on a service task's container.
const (
	LabelSwarmTaskID      = "com.docker.swarm.task.id"
	LabelSwarmServiceName = "com.docker.swarm.service.name"
)

// SwarmTask reports whether c is a Swarm service's task container, and the
// service's name. Such a container belongs to Swarm: a container deploy
// would clone it outside Swarm and stop the task, which Swarm then
// replaces. The service is what gets deployed.
func SwarmTask(c container.InspectResponse) (service string, ok bool) {
	if c.Config == nil || c.Config.Labels[LabelSwarmTaskID] == "" {
		return "", false
	}
	if name := c.Config.Labels[LabelSwarmServiceName]; name != "" {
		return name, true
	}
	return "SERVICE (docker service ls)", true
}

// notATask refuses a container deploy or rollback of a Swarm task.
func notATask(c container.InspectResponse) error {
	if svc, ok := SwarmTask(c); ok {
		return classify(ErrInvalid, "container %s is a task of Swarm service %s: deploy the service instead (baton deploy %s)", strings.TrimPrefix(c.Name, "/"), svc, svc)
	}
	return nil
}
