package swarmdeploy

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/baton-sh/baton/internal/deploy"
)

// ServiceStatus is what baton status shows for a Swarm service.
type ServiceStatus struct {
	Service       string    `json:"service"`
	Image         string    `json:"image"`
	PreviousImage string    `json:"previous_image,omitempty"`
	Running       int       `json:"running"` // tasks running
	Desired       int       `json:"desired"` // tasks meant to run
	Update        string    `json:"update,omitempty"`
	UpdateMessage string    `json:"update_message,omitempty"`
	Since         time.Time `json:"since"` // the spec's last change
}

// Status reads one service's state. It changes nothing: Swarm converges
// an interrupted update itself, and the next deploy waits for it.
func Status(ctx context.Context, eng Engine, name string) (ServiceStatus, error) {
	svc, found, err := FindService(ctx, eng, name)
	if err != nil {
		return ServiceStatus{}, err
	}
	if !found {
		return ServiceStatus{}, kinded(deploy.ErrNotFound, "no swarm service named %s on this engine", name)
	}
	st := ServiceStatus{Service: svc.Spec.Name, Since: svc.UpdatedAt}
	if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
		st.Image = cs.Image
	}
	if p := svc.PreviousSpec; p != nil && p.TaskTemplate.ContainerSpec != nil {
		st.PreviousImage = p.TaskTemplate.ContainerSpec.Image
	}
	if us := svc.UpdateStatus; us != nil {
		st.Update, st.UpdateMessage = string(us.State), us.Message
	}
	d := &Deployer{Engine: eng}
	tasks, err := d.tasks(ctx, svc.ID)
	if err != nil {
		return st, fmt.Errorf("service %s: tasks: %w", name, err)
	}
	for _, t := range tasks {
		if t.DesiredState == swarm.TaskStateRunning {
			st.Desired++
			if t.Status.State == swarm.TaskStateRunning {
				st.Running++
			}
		}
	}
	if m := svc.Spec.Mode.Replicated; m != nil && m.Replicas != nil {
		st.Desired = int(*m.Replicas)
	}
	return st, nil
}
