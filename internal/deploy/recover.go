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
		// No deploy record names a container: whatever carries the
		// service's labels is left alone (status lists it).
		return "", nil
	}
	if waitingCanary(rec) {
		// Not interrupted: it waits for baton promote or baton abort.
		return fmt.Sprintf("canary of deploy %s is on: %d%% of new connections go to %s (%s); baton promote %s or baton abort %s ends it",
			rec.DeployID, rec.Settings.Canary.Percent, rec.NewName, rec.NewImage, svc.Name, svc.Name), nil
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
	if errdefs.IsNotFound(newErr) && rec.NewID == "" {
		newC, newErr = d.awaitInFlightCreate(ctx, rec)
	}
	if newErr != nil && !errdefs.IsNotFound(newErr) {
		return "", newErr
	}
	if newErr == nil && rec.NewID == "" && !createdBy(newC, rec) {
		// Killed between create and recording the new container's ID: the
		// name alone is not enough, it must carry this deploy's random ID
		// and be younger than the deploy.
		event(PhaseRecover, svc.Name, "container %s is not the one deploy %s created; leaving it alone", rec.NewName, rec.DeployID)
		newErr = errdefs.NotFound(fmt.Errorf("no container of deploy %s", rec.DeployID))
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

	// The plan of the interrupted deploy, rebuilt from its record.
	r := &run{d: d, svc: svc, plan: planFromRecord(rec), res: &Result{StartedAt: time.Now(), OldImage: rec.OldImage}}
	r.rec, r.phase = rec, PhaseRecover
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
		r.switched = r.plan.TrafficMode.moves()
		if o.OldRunning {
			event(PhaseRecover, svc.Name, "stopping %s to finish the interrupted deploy", rec.OldName)
			if err := stopContainer(ctx, d.Engine, rec.OldID, rec.Settings.StopTimeout); err != nil && !errdefs.IsNotFound(err) {
				return "", fmt.Errorf("stopping %s: %w", rec.OldName, err)
			}
		}
		if r.plan.TrafficMode.moves() {
			if err := r.traffic.Ensure(ctx, r.newEP); err != nil {
				return "", fmt.Errorf("moving traffic to %s: %w", rec.NewName, err)
			}
		}
		if err := r.rollForward(ctx, r.plan.steps); err != nil {
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
		return "", nil // only a record makes baton act on a leftover
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
	if r.plan.TrafficMode.moves() {
		if err := r.traffic.Ensure(ctx, r.oldEP); err != nil {
			return fmt.Errorf("moving traffic back to %s: %w", r.rec.OldName, err)
		}
		if o.NewRunning {
			if _, err := r.traffic.Drain(ctx, r.newEP, r.plan.settings.Drain); err != nil {
				return err
			}
		}
	}
	if o.NewExists {
		if err := removeContainer(ctx, r.d.Engine, r.rec.NewID, container.RemoveOptions{Force: true}); err != nil {
			return fmt.Errorf("removing %s: %w", r.rec.NewName, err)
		}
	}
	// The old container serves on, traffic set up for it: the service is
	// baton's, as the operator asked when starting the deploy.
	if old, err := r.d.Engine.ContainerInspect(ctx, r.rec.OldID); err == nil {
		if err := r.d.recordService(r.svc, old, "", r.rec.Flags, "", ""); err != nil {
			return err
		}
	}
	return r.d.State.RemoveRecord(r.svc.Key)
}

// inFlightCreateGrace bounds how long after a deploy started its create
// call can still be running in the engine. A baton killed right after
// sending the create leaves the engine to finish it: a recovery that looked
// once and found nothing would remove the record and orphan the container
// that appears a moment later.
const inFlightCreateGrace = 15 * time.Second

// awaitInFlightCreate looks for the new container of a record written
// before its create returned, for as long as that create could still be
// under way. A short poll: the engine gives no event for a create that
// has not happened yet under a name we can filter on without an ID.
func (d *Deployer) awaitInFlightCreate(ctx context.Context, rec Record) (container.InspectResponse, error) {
	sent := rec.CreateAt
	if sent.IsZero() {
		sent = rec.StartedAt // a record of an earlier version
	}
	deadline := sent.Add(inFlightCreateGrace)
	for {
		c, err := d.Engine.ContainerInspect(ctx, rec.NewName)
		if !errdefs.IsNotFound(err) || !time.Now().Before(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return c, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// createdBy reports whether c is the container deploy rec created under
// rec.NewName, for a record written before the create returned its ID.
func createdBy(c container.InspectResponse, rec Record) bool {
	if c.Config == nil || c.Config.Labels[LabelDeployID] != rec.DeployID || rec.DeployID == "" {
		return false
	}
	created, err := time.Parse(time.RFC3339Nano, c.Created)
	return err == nil && !created.Before(rec.StartedAt.Add(-time.Second))
}

// leftovers lists containers the operator (not an image) labelled as app
// containers of svc that neither carry the service's name nor are the new
// container of its deploy record, newest first. They
// are only reported: baton acts on a container only when a deploy record
// names it.
func (d *Deployer) leftovers(ctx context.Context, svc Service) ([]container.Summary, error) {
	list, err := d.Engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelService+"="+svc.Key),
		filters.Arg("label", LabelRole+"="+RoleApp),
	)})
	if err != nil {
		return nil, fmt.Errorf("listing containers of %s: %w", svc.Key, err)
	}
	// The new container of a deploy record still on disk (a canary, or a
	// deploy converging could not finish) is that record's, not a leftover.
	var rec Record
	found, err := d.State.ReadRecord(svc.Key, &rec)
	if err != nil {
		return nil, err
	}
	var out []container.Summary
	for _, c := range list {
		if len(c.Names) == 0 || strings.TrimPrefix(c.Names[0], "/") == svc.Name {
			continue
		}
		if found && (c.ID == rec.NewID || strings.TrimPrefix(c.Names[0], "/") == rec.NewName) {
			continue
		}
		il, err := ImageLabels(ctx, d.Engine, c.ImageID)
		if err != nil {
			return nil, err
		}
		if own, _ := OwnLabels(c.Labels, il); own[LabelService] != svc.Key || own[LabelRole] != RoleApp {
			continue // only its image says so
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
	removed, err := d.Engine.PruneMirrors(ctx)
	if err != nil {
		event(PhaseRecover, "", "could not remove unused warm-up networks: %v", err)
	}
	if len(removed) > 0 {
		event(PhaseRecover, "", "removed unused network %s (the network it copied, or its service, is gone)", strings.Join(removed, ", "))
	}
}
