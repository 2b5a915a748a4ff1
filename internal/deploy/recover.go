package deploy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"
)

// recoveryAction is what converging an interrupted deploy does.
type recoveryAction string

const (
	recoverNothing    recoveryAction = "nothing"      // no leftovers
	recoverBack       recoveryAction = "roll-back"    // old serves: send traffic to it, remove the new one
	recoverForward    recoveryAction = "roll-forward" // new serves: stop the old, hand over, rename
	recoverRestartOld recoveryAction = "restart-old"  // neither serves, the old one can be started again
	recoverStuck      recoveryAction = "stuck"        // nothing can serve: a person must look
)

// observed is what recovery sees of an interrupted deploy.
type observed struct {
	PastNoReturn bool // the record says the old container's stop may have begun
	OldExists    bool
	OldRunning   bool
	NewExists    bool
	NewRunning   bool
	NewHealthy   bool // running and not reported unhealthy
}

// decideRecovery is the pure rule: before the point of no return, go back to
// the old container if it still runs; after it, go forward to the new one if
// it runs. Either way the service ends with a serving container whenever one
// of the two can serve.
func decideRecovery(o observed) recoveryAction {
	switch {
	case !o.NewExists && o.OldRunning:
		return recoverBack
	case o.PastNoReturn && o.NewRunning:
		return recoverForward
	case !o.PastNoReturn && o.OldRunning:
		return recoverBack
	case !o.OldRunning && o.NewRunning && o.NewHealthy:
		return recoverForward
	case !o.OldRunning && o.OldExists:
		return recoverRestartOld
	case !o.OldExists && !o.NewExists:
		return recoverStuck
	case !o.OldExists && o.NewExists && !o.NewRunning:
		return recoverStuck
	}
	return recoverForward
}

// converge finds what an interrupted deploy of svc left behind and finishes
// or undoes it. It returns a note saying what it did ("" when there was
// nothing to do). Callers hold the service's lock.
func (d *Deployer) converge(ctx context.Context, svc Service, event func(Phase, string, string, ...any)) (string, error) {
	var rec Record
	found, err := d.State.ReadRecord(svc.Key, &rec)
	if err != nil {
		return "", err
	}
	if !found {
		return d.convergeWithoutRecord(ctx, svc, event)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()

	oldC, oldErr := d.Engine.ContainerInspect(ctx, rec.OldID)
	if oldErr != nil && !errdefs.IsNotFound(oldErr) {
		return "", oldErr
	}
	newRef := rec.NewID
	if newRef == "" {
		newRef = rec.NewName
	}
	newC, newErr := d.Engine.ContainerInspect(ctx, newRef)
	if newErr != nil && !errdefs.IsNotFound(newErr) {
		return "", newErr
	}
	o := observed{
		PastNoReturn: rec.pastNoReturn(),
		OldExists:    oldErr == nil,
		NewExists:    newErr == nil,
	}
	o.OldRunning = o.OldExists && oldC.State.Running
	o.NewRunning = o.NewExists && newC.State.Running
	o.NewHealthy = o.NewRunning && (newC.State.Health == nil || newC.State.Health.Status != "unhealthy")
	if o.NewExists {
		rec.NewID = newC.ID
	}
	act := decideRecovery(o)
	event(PhaseRecover, svc.Name, "found an interrupted deploy %s of %s (phase %s): %s", rec.DeployID, svc.Name, rec.Phase, act)

	r := &run{d: d, svc: svc, settings: rec.Settings, rec: rec, res: &Result{StartedAt: time.Now()}, phase: PhaseRecover, newRef: rec.NewImage}
	r.res.OldImage = rec.OldImage
	if r.traffic, err = d.Traffic(ctx, svc, rec.Settings); err != nil {
		return "", err
	}
	if r.batonNet, err = d.Engine.EnsureServiceNetwork(ctx, svc.Key); err != nil {
		return "", err
	}
	if o.NewExists {
		r.newEP = endpointOf(newC, r.batonNet, rec.Settings.Port)
		r.portBindings = newC.HostConfig.PortBindings
	}
	if o.OldExists {
		r.oldEP = endpointOf(oldC, r.batonNet, rec.Settings.Port)
	}

	switch act {
	case recoverBack:
		if err := r.recoverBack(ctx, o); err != nil {
			return "", err
		}
		return fmt.Sprintf("rolled back interrupted deploy %s: %s kept serving", rec.DeployID, svc.Name), nil
	case recoverRestartOld:
		if err := d.Engine.ContainerStart(ctx, rec.OldID, container.StartOptions{}); err != nil {
			return "", fmt.Errorf("restarting %s after an interrupted deploy: %w", rec.OldName, err)
		}
		if oldC, err = d.Engine.ContainerInspect(ctx, rec.OldID); err != nil {
			return "", err
		}
		r.oldEP = endpointOf(oldC, r.batonNet, rec.Settings.Port)
		o.OldRunning = true
		if err := r.recoverBack(ctx, o); err != nil {
			return "", err
		}
		return fmt.Sprintf("interrupted deploy %s: neither container was serving; restarted %s", rec.DeployID, svc.Name), nil
	case recoverForward:
		r.switched = r.traffic.Mode() != "none"
		if o.OldRunning {
			event(PhaseRecover, svc.Name, "stopping %s to finish the interrupted deploy", rec.OldName)
			if err := stopContainer(ctx, d.Engine, rec.OldID, rec.Settings.StopTimeout); err != nil && !errdefs.IsNotFound(err) {
				return "", fmt.Errorf("stopping %s: %w", rec.OldName, err)
			}
		}
		if r.traffic.Mode() != "none" {
			if err := r.traffic.Ensure(ctx, r.newEP); err != nil {
				return "", fmt.Errorf("moving traffic to %s: %w", rec.NewName, err)
			}
		}
		if err := r.rollForward(ctx); err != nil {
			return "", err
		}
		return fmt.Sprintf("finished interrupted deploy %s: %s now runs %s", rec.DeployID, svc.Name, rec.NewImage), nil
	default:
		return "", fmt.Errorf("interrupted deploy %s of %s left neither the old container (%s) nor the new one (%s) able to serve; start one by hand, then remove %s",
			rec.DeployID, svc.Name, shortID(rec.OldID), rec.NewName, d.State.Path())
	}
}

// recoverMissing converges a service that has no container under its name
// (name is both), if baton left a deploy record or leftovers for it. It
// returns "" when there was nothing of baton's to converge.
func (d *Deployer) recoverMissing(ctx context.Context, name string, event func(Phase, string, string, ...any)) (string, error) {
	svc := Service{Key: name, Name: name}
	var rec Record
	found, err := d.State.ReadRecord(svc.Key, &rec)
	if err != nil {
		return "", err
	}
	if !found {
		l, err := d.leftovers(ctx, svc)
		if err != nil || len(l) == 0 {
			return "", err
		}
	}
	unlock, err := d.State.Lock(ctx, svc.Key, nil)
	if err != nil {
		return "", err
	}
	defer unlock()
	return d.converge(ctx, svc, event)
}

// recoverBack sends traffic to the old container, lets the new one drain and
// removes it.
func (r *run) recoverBack(ctx context.Context, o observed) error {
	if r.traffic.Mode() != "none" {
		if err := r.traffic.Ensure(ctx, r.oldEP); err != nil {
			return fmt.Errorf("moving traffic back to %s: %w", r.rec.OldName, err)
		}
		if o.NewRunning {
			if err := r.traffic.Drain(ctx, r.newEP, r.settings.Drain); err != nil {
				return err
			}
		}
	}
	if o.NewExists {
		if err := r.d.Engine.ContainerRemove(ctx, r.rec.NewID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("removing %s: %w", r.rec.NewName, err)
		}
	}
	return r.d.State.RemoveRecord(r.svc.Key)
}

// convergeWithoutRecord handles leftovers when the deploy record is gone
// (another state directory, or it was deleted): app containers baton created
// for the service under a temporary name.
func (d *Deployer) convergeWithoutRecord(ctx context.Context, svc Service, event func(Phase, string, string, ...any)) (string, error) {
	leftovers, err := d.leftovers(ctx, svc)
	if err != nil || len(leftovers) == 0 {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	serving, err := d.Engine.ContainerInspect(ctx, svc.Name)
	servingOK := err == nil && serving.State.Running
	if err != nil && !errdefs.IsNotFound(err) {
		return "", err
	}
	var done []string
	promoted := ""
	if !servingOK {
		// Promote the newest running leftover; it was healthy enough to have
		// been created and started by a deploy.
		for _, l := range leftovers {
			if l.State != "running" {
				continue
			}
			if err == nil {
				if rmErr := d.Engine.ContainerRemove(ctx, serving.ID, container.RemoveOptions{}); rmErr != nil && !errdefs.IsNotFound(rmErr) {
					return "", fmt.Errorf("removing stopped %s: %w", svc.Name, rmErr)
				}
			}
			name := strings.TrimPrefix(l.Names[0], "/")
			if err := d.Engine.ContainerRename(ctx, l.ID, svc.Name); err != nil {
				return "", fmt.Errorf("renaming %s to %s: %w", name, svc.Name, err)
			}
			event(PhaseRecover, svc.Name, "no %s was serving; promoted %s", svc.Name, name)
			done = append(done, "promoted "+name)
			servingOK = true
			promoted = l.ID
			break
		}
	}
	if !servingOK {
		return "", fmt.Errorf("no container of %s is running and no leftover could take over; start %s by hand", svc.Name, svc.Name)
	}
	for _, l := range leftovers {
		if l.ID == promoted {
			continue
		}
		name := strings.TrimPrefix(l.Names[0], "/")
		if err := d.Engine.ContainerRemove(ctx, l.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			return "", fmt.Errorf("removing leftover %s: %w", name, err)
		}
		event(PhaseRecover, name, "removed leftover %s of an interrupted deploy", name)
		done = append(done, "removed "+name)
	}
	return strings.Join(done, ", "), nil
}

// leftovers lists the app containers baton made for svc that do not carry
// the service's name, newest first.
func (d *Deployer) leftovers(ctx context.Context, svc Service) ([]container.Summary, error) {
	list, err := d.Engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelService+"="+svc.Key),
		filters.Arg("label", LabelRole+"="+RoleApp),
	)})
	if err != nil {
		return nil, fmt.Errorf("listing containers of %s: %w", svc.Key, err)
	}
	var out []container.Summary
	for _, c := range list {
		if len(c.Names) == 0 || strings.TrimPrefix(c.Names[0], "/") == svc.Name {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created > out[j].Created })
	return out, nil
}

// pruneMirrors removes copies of networks that are gone (a project taken
// down): they are of no use to anyone, and a failure here hinders nothing.
func (d *Deployer) pruneMirrors(ctx context.Context, event func(Phase, string, string, ...any)) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if removed, err := d.Engine.PruneMirrors(ctx); err != nil {
		event(PhaseRecover, "", "could not remove unused warm-up networks: %v", err)
	} else if len(removed) > 0 {
		event(PhaseRecover, "", "removed unused network %s (the network it copied, or its service, is gone)", strings.Join(removed, ", "))
	}
}
