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
	// IgnoredLabels are baton.* and com.docker.compose.* labels the
	// container's image carries itself, which baton never takes as settings.
	IgnoredLabels []string `json:"ignored_labels,omitempty"`
	// Engine and EngineHost name the Docker engine the container runs on:
	// its docker context (or "default", or "env" for DOCKER_HOST) and URL.
	Engine     string `json:"engine,omitempty"`
	EngineHost string `json:"engine_host,omitempty"`
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
		var err error
		if services, err = d.managedServices(ctx, report); err != nil {
			return nil, err
		}
	}
	d.pruneMirrors(ctx, report)
	out := make([]ServiceStatus, 0, len(services))
	for _, svc := range services {
		if target != "" {
			d.adoptEarlierDeploy(ctx, svc, report)
		}
		out = append(out, d.serviceStatus(ctx, svc, report))
	}
	return out, nil
}

// adoptEarlierDeploy records, as baton's, a container that an earlier
// version of baton deployed (before deploys were recorded in the state
// directory), when the operator names it: `baton status NAME` then repairs
// and migrates its traffic as for any deploy of this version. Only an
// explicit name adopts (the operator's word, as a deploy's is); the
// container's own baton.managed label must not come from its image; and a
// service this version already recorded is never re-adopted. A status of
// every service (the boot unit) adopts nothing.
func (d *Deployer) adoptEarlierDeploy(ctx context.Context, svc Service, report func(Phase, string, string, ...any)) {
	if _, recorded, err := d.readService(svc.Key); err != nil || recorded {
		return
	}
	c, err := d.Engine.ContainerInspect(ctx, svc.Name)
	if err != nil || c.Config == nil || !c.State.Running {
		return
	}
	own, _, err := ContainerOwnLabels(ctx, d.Engine, c)
	if err != nil || own[LabelManaged] != "true" || own[LabelRole] != RoleApp || own[LabelService] != svc.Key {
		return
	}
	unlock, ok, err := d.State.TryLock(svc.Key)
	if err != nil || !ok {
		return
	}
	defer unlock()
	if err := d.recordService(svc, c, own[LabelDeployID], nil, own[LabelPreviousImage], own[LabelPreviousImageID]); err != nil {
		report(PhaseRecover, svc.Name, "could not record %s as deployed by an earlier baton: %v", svc.Name, err)
		return
	}
	report(PhaseRecover, svc.Name, "recorded %s (%s), deployed by an earlier version of baton, as this service's serving container", svc.Name, shortID(c.ID))
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
	rec, recorded, err := d.readService(svc.Key)
	if err != nil {
		st.Problem = strings.TrimSpace(st.Problem + " " + err.Error())
	}
	if st.Managed = recorded && rec.ContainerID == c.ID; st.Managed {
		st.PreviousImage, st.PreviousImageID = rec.PreviousImage, rec.PreviousImageID
	} else if st.Problem == "" && !st.DeployRunning {
		st.Problem = fmt.Sprintf("baton has no record of deploying container %s (%s), so it leaves it alone; baton deploy %s records it", svc.Name, shortID(c.ID), svc.Name)
	}
	res, err := d.resolveSettings(ctx, svc, c, nil)
	st.IgnoredLabels = res.Ignored
	if err != nil {
		st.Problem = strings.TrimSpace(st.Problem + " " + err.Error())
		return st
	}
	settings := res.Settings
	st.Settings = settings.String()
	if t, err := d.Traffic(ctx, svc, settings); err == nil {
		if desc, err := t.Describe(ctx); err == nil {
			st.Traffic = desc
		} else {
			st.Traffic = string(settings.TrafficMode()) + ": " + err.Error()
		}
	}
	if leftovers, err := d.leftovers(ctx, svc); err == nil && len(leftovers) > 0 && !st.DeployRunning {
		var names []string
		for _, l := range leftovers {
			names = append(names, strings.TrimPrefix(l.Names[0], "/"))
		}
		st.Problem = strings.TrimSpace(st.Problem + " containers labelled as " + svc.Key + "'s that no deploy record names (left alone): " + strings.Join(names, ", "))
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
	if err != nil || !c.State.Running {
		return nil // the status reports the container's state itself
	}
	// Only a container baton deployed, by its record, never by a label.
	if rec, ok, err := d.readService(svc.Key); err != nil || !ok || rec.ContainerID != c.ID {
		return err
	}
	res, err := d.resolveSettings(ctx, svc, c, nil)
	if err != nil {
		return err
	}
	settings := res.Settings
	if !settings.TrafficMode().moves() {
		return nil
	}
	if settings.Port == 0 {
		settings.Port = derivePort(c)
	}
	r := &run{d: d, svc: svc, plan: servingPlan(svc, settings), res: &Result{StartedAt: time.Now()}}
	r.phase = PhaseRecover
	if err := r.ensureTraffic(ctx, c.ID); err != nil {
		return fmt.Errorf("pointing traffic at %s: %w", svc.Name, err)
	}
	return nil
}

// managedServices lists the services baton knows from its state directory,
// and those whose containers the operator (not an image) labelled as
// baton's: a host upgraded from a version without service records shows
// them, though baton acts on none of them until a deploy records it.
func (d *Deployer) managedServices(ctx context.Context, report func(Phase, string, string, ...any)) ([]Service, error) {
	known, err := d.serviceKeys()
	if err != nil {
		return nil, err
	}
	list, err := d.Engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelRole+"="+RoleApp))})
	if err != nil {
		return nil, fmt.Errorf("listing baton's containers: %w", err)
	}
	for _, c := range list {
		il, err := ImageLabels(ctx, d.Engine, c.ImageID)
		if err != nil {
			return nil, err
		}
		own, ignored := OwnLabels(c.Labels, il)
		key := own[LabelService]
		if own[LabelRole] != RoleApp || key == "" {
			if len(ignored) > 0 && len(c.Names) > 0 {
				report(PhaseRecover, strings.TrimPrefix(c.Names[0], "/"), "ignoring container %s: only its image labels it as baton's (%s)", strings.TrimPrefix(c.Names[0], "/"), strings.Join(ignored, " "))
			}
			continue
		}
		if _, ok := known[key]; !ok {
			known[key] = Service{Key: key, Name: key}
		}
	}
	services := make([]Service, 0, len(known))
	for _, svc := range known {
		services = append(services, svc)
	}
	sort.Slice(services, func(i, j int) bool { return services[i].Key < services[j].Key })
	return services, nil
}
