package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"
)

// ServiceStatus is what baton status shows for one service.
type ServiceStatus struct {
	Service         string `json:"service"`
	Container       string `json:"container"`
	ID              string `json:"id,omitempty"`
	Image           string `json:"image,omitempty"`
	ImageID         string `json:"image_id,omitempty"`
	State           string `json:"state"`
	Health          string `json:"health,omitempty"`
	Since           string `json:"since,omitempty"`
	PreviousImage   string `json:"previous_image,omitempty"`
	PreviousImageID string `json:"previous_image_id,omitempty"`
	Managed         bool   `json:"managed"`
	Traffic         string `json:"traffic,omitempty"`
	Settings        string `json:"settings,omitempty"`
	DeployRunning   bool   `json:"deploy_running,omitempty"`
	Recovered       string `json:"recovered,omitempty"`
	Problem         string `json:"problem,omitempty"`
}

// Status reports on target, or on every service baton manages when target
// is "". Like a deploy, it first converges what an interrupted deploy left
// behind, unless a deploy of that service is running right now.
func (d *Deployer) Status(ctx context.Context, target string, report func(Phase, string, string, ...any)) ([]ServiceStatus, error) {
	var services []Service
	if target != "" {
		c, err := inspectTarget(ctx, d.Engine, target)
		if errors.Is(err, ErrNotFound) {
			if note, rerr := d.recoverMissing(ctx, target, report); rerr != nil {
				return nil, rerr
			} else if note != "" {
				c, err = inspectTarget(ctx, d.Engine, target)
				if err == nil {
					report(PhaseRecover, target, "%s", note)
				}
			}
		}
		if err != nil {
			return nil, err
		}
		services = append(services, ServiceOf(c))
	} else {
		list, err := d.Engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", LabelRole+"="+RoleApp))})
		if err != nil {
			return nil, fmt.Errorf("listing baton's containers: %w", err)
		}
		seen := map[string]bool{}
		for _, c := range list {
			key := c.Labels[LabelService]
			if key == "" || seen[key] {
				continue
			}
			seen[key] = true
			services = append(services, Service{Key: key, Name: key})
		}
		sort.Slice(services, func(i, j int) bool { return services[i].Key < services[j].Key })
	}
	d.pruneMirrors(ctx, report)
	out := make([]ServiceStatus, 0, len(services))
	for _, svc := range services {
		out = append(out, d.serviceStatus(ctx, svc, report))
	}
	return out, nil
}

func (d *Deployer) serviceStatus(ctx context.Context, svc Service, report func(Phase, string, string, ...any)) ServiceStatus {
	st := ServiceStatus{Service: svc.Key, Container: svc.Name}
	unlock, ok, err := d.State.TryLock(svc.Key)
	switch {
	case err != nil:
		st.Problem = err.Error()
	case !ok:
		st.DeployRunning = true
	default:
		note, err := d.converge(ctx, svc, report)
		if err == nil {
			err = d.repairTraffic(ctx, svc)
		}
		unlock()
		if err != nil {
			st.Problem = err.Error()
		}
		st.Recovered = note
	}
	c, err := d.Engine.ContainerInspect(ctx, svc.Name)
	if errdefs.IsNotFound(err) {
		st.State = "missing"
		if st.Problem == "" {
			st.Problem = "no container named " + svc.Name
		}
		return st
	}
	if err != nil {
		st.State = "unknown"
		st.Problem = err.Error()
		return st
	}
	st.ID = c.ID
	st.Image = c.Config.Image
	st.ImageID = c.Image
	st.State = c.State.Status
	if c.State.Health != nil {
		st.Health = c.State.Health.Status
	}
	st.Since = c.State.StartedAt
	st.PreviousImage = c.Config.Labels[LabelPreviousImage]
	st.PreviousImageID = c.Config.Labels[LabelPreviousImageID]
	st.Managed = c.Config.Labels[LabelManaged] == "true"
	settings, err := ResolveSettings(nil, c.Config.Labels)
	if err != nil {
		st.Problem = err.Error()
		return st
	}
	st.Settings = settings.String()
	if t, err := d.Traffic(ctx, svc, settings); err == nil {
		if desc, err := t.Describe(ctx); err == nil {
			st.Traffic = desc
		} else {
			st.Traffic = settings.TrafficMode() + ": " + err.Error()
		}
	}
	if leftovers, err := d.leftovers(ctx, svc); err == nil && len(leftovers) > 0 && !st.DeployRunning {
		var names []string
		for _, l := range leftovers {
			names = append(names, strings.TrimPrefix(l.Names[0], "/"))
		}
		st.Problem = strings.TrimSpace(st.Problem + " leftovers: " + strings.Join(names, ", "))
	}
	return st
}

// repairTraffic points the service's traffic (relay, nginx upstream file) at
// its serving container again, as a no-op deploy does. After a host reboot
// the containers' addresses on baton's network can differ from the ones
// written before, so a boot-time baton status repairs them; when all is
// right it changes nothing (the upstream file is rewritten, and nginx
// reloaded, only if its content differs).
func (d *Deployer) repairTraffic(ctx context.Context, svc Service) error {
	c, err := d.Engine.ContainerInspect(ctx, svc.Name)
	if err != nil || !c.State.Running || c.Config.Labels[LabelManaged] != "true" {
		return nil // the status reports the container's state itself
	}
	settings, err := ResolveSettings(nil, c.Config.Labels)
	if err != nil || settings.TrafficMode() == "none" {
		return nil
	}
	if settings.Port == 0 {
		settings.Port = derivePort(c)
	}
	r := &run{d: d, svc: svc, settings: settings, old: c, res: &Result{StartedAt: time.Now()}, phase: PhaseRecover}
	if err := r.ensureTraffic(ctx); err != nil {
		return fmt.Errorf("pointing traffic at %s: %w", svc.Name, err)
	}
	return nil
}
