package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/errdefs"
)

// errCanaryWaiting ends the walk of a plan whose canary has no duration:
// the deploy returns with the split on, and baton promote or baton abort
// finishes it.
var errCanaryWaiting = errors.New("canary waits for promote or abort")

// canary sends the canary's share of new connections to the new container,
// then either watches it for the canary's duration (reverting as a bake
// does) or, without a duration, leaves the split on for promote or abort.
func (r *run) canary(ctx context.Context) error {
	c := r.plan.settings.Canary
	r.enter(PhaseCanary)
	if err := r.saveRecord(PhaseCanary); err != nil {
		return err
	}
	sp, ok := r.traffic.(splitter)
	if !ok {
		return &PhaseError{Phase: PhaseCanary, OldServing: true, Err: fmt.Errorf("traffic mode %s cannot split connections; --canary needs the relay", r.plan.TrafficMode)}
	}
	// From here a rollback sends every connection back to the old one.
	r.switched = true
	r.event(PhaseCanary, r.rec.NewName, "sending %d%% of new connections to %s, the rest to %s", c.Percent, r.rec.NewName, r.svc.Name)
	if err := sp.Split(ctx, r.oldEP, r.newEP, c.Percent); err != nil {
		return &PhaseError{Phase: PhaseCanary, OldServing: true, Err: err}
	}
	if c.Duration == 0 {
		return errCanaryWaiting
	}
	r.event(PhaseCanary, r.rec.NewName, "canary for %s: all traffic moves to %s after it, and back to %s if %s", c.Duration, r.rec.NewName, r.svc.Name, watchedFor(r.plan.settings))
	return r.watchWindow(ctx, PhaseCanary, c.Duration)
}

// canaryWaiting ends a deploy whose canary waits for a decision: the record
// stays (phase canary), so the next deploy refuses and status shows it.
func (r *run) canaryWaiting() error {
	r.res.Outcome = OutcomeCanary
	r.res.OldServing = true
	r.note("canary: %d%% of new connections go to %s (%s), the rest to %s; baton promote %s moves all traffic to it and finishes the deploy, baton abort %s sends it back and removes %s",
		r.plan.settings.Canary.Percent, r.rec.NewName, r.plan.ref, r.svc.Name, r.svc.Name, r.svc.Name, r.rec.NewName)
	return nil
}

// waitingCanary reports whether rec is a canary that waits for promote or
// abort: no deploy process owns it, so recovery leaves it alone. A canary
// with a duration belonged to a deploy that was killed, and recovery
// reverts it like any deploy before the point of no return.
func waitingCanary(rec Record) bool {
	return rec.Phase == PhaseCanary && rec.Settings.Canary.Duration == 0
}

func canaryPendingError(rec Record) error {
	return classify(ErrInvalid, "a canary of %s is on (deploy %s: %d%% of new connections to %s, %s); run baton promote %s or baton abort %s first",
		rec.Service.Name, rec.DeployID, rec.Settings.Canary.Percent, rec.NewName, rec.NewImage, rec.Service.Name, rec.Service.Name)
}

// Promote finishes a canary that waits for a decision: all traffic to the
// new container, the old one drained, baked (with --bake), stopped and
// replaced, as the rest of the deploy would have. A new container that is
// no longer running and healthy is not promoted (exit 2; abort it).
func (d *Deployer) Promote(ctx context.Context, target string) (*Result, error) {
	return d.decideCanary(ctx, target, true)
}

// Abort ends a canary that waits for a decision: all traffic back to the
// old container and the new one removed. The result's outcome is reverted.
func (d *Deployer) Abort(ctx context.Context, target string) (*Result, error) {
	return d.decideCanary(ctx, target, false)
}

func (d *Deployer) decideCanary(ctx context.Context, target string, promote bool) (*Result, error) {
	res := &Result{StartedAt: time.Now(), Target: target, Trigger: "cli", Outcome: OutcomeFailed, OldServing: true}
	fail := func(err error) (*Result, error) {
		res.Error, res.ExitCode = err.Error(), ExitCode(err)
		res.Duration = time.Since(res.StartedAt)
		return res, err
	}
	old, err := inspectTarget(ctx, d.Engine, target)
	if err != nil {
		return fail(err)
	}
	svc := ServiceOf(old)
	res.Service, res.Container = svc.Key, svc.Name
	unlock, err := d.State.Lock(ctx, svc.Key, nil)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	var rec Record
	found, err := d.State.ReadRecord(svc.Key, &rec)
	if err != nil {
		return fail(err)
	}
	if !found || !waitingCanary(rec) {
		return fail(classify(ErrInvalid, "no canary of %s waits for a decision (baton status %s shows what serves)", svc.Name, svc.Name))
	}
	r, newRunning, err := d.runFromRecord(ctx, svc, rec)
	if err != nil {
		return fail(err)
	}
	r.res.Target, r.res.Trigger = target, "cli"
	r.switched = true
	if !promote {
		r.event(PhaseCanary, svc.Name, "aborting the canary: all traffic back to %s, removing %s", svc.Name, rec.NewName)
		if err := r.recoverBack(ctx, observed{OldExists: true, OldRunning: true, NewExists: r.newEP.ID != "", NewRunning: newRunning}); err != nil {
			return fail(&PhaseError{Phase: PhaseCanary, OldServing: true, Err: err})
		}
		r.res.Outcome = OutcomeReverted
		r.res.Duration = time.Since(r.res.StartedAt)
		r.note("canary aborted: %s serves %s again and %s was removed", svc.Name, rec.OldImage, rec.NewName)
		return r.res, nil
	}
	if !newRunning {
		return fail(classify(ErrInvalid, "canary %s is not running and healthy, so it is not promoted; baton abort %s sends all traffic back to %s", rec.NewName, svc.Name, svc.Name))
	}
	r.event(PhaseSwitch, rec.NewName, "promoting the canary %s: all traffic to it", rec.NewName)
	steps := []Step{{StepSwitch, ""}, {StepDrain, ""}}
	if rec.Settings.Bake > 0 {
		steps = append(steps, Step{StepBake, ""})
	}
	steps = append(steps, Step{StepStopOld, ""})
	steps = append(steps, afterNoReturnSteps(rec.OldName, rec.NewName, rec.Handover)...)
	err = r.walk(ctx, steps)
	r.enter("")
	r.res.Duration = time.Since(r.res.StartedAt)
	if err != nil {
		r.res.Outcome = OutcomeFailed
		if r.reverted {
			r.res.Outcome = OutcomeReverted
		}
		var pe *PhaseError
		if errors.As(err, &pe) {
			r.res.OldServing = pe.OldServing
		}
		r.res.Error, r.res.ExitCode = err.Error(), ExitCode(err)
		return r.res, err
	}
	return r.res, nil
}

// runFromRecord rebuilds the run of an interrupted or waiting deploy from
// its record: the plan's settings and networks, traffic, both endpoints.
// newRunning says whether the new container runs and is not unhealthy.
func (d *Deployer) runFromRecord(ctx context.Context, svc Service, rec Record) (*run, bool, error) {
	r := &run{d: d, svc: svc, plan: planFromRecord(rec), res: &Result{StartedAt: time.Now(), OldImage: rec.OldImage, NewImage: rec.NewImage,
		Service: svc.Key, Container: svc.Name, DeployID: rec.DeployID, NewID: rec.NewID, OldServing: true, Traffic: string(rec.Settings.TrafficMode())}}
	r.rec, r.phase = rec, PhaseCanary
	var err error
	if r.traffic, err = d.Traffic(ctx, svc, rec.Settings); err != nil {
		return nil, false, err
	}
	if r.batonNet, err = d.Engine.EnsureServiceNetwork(ctx, svc.Key); err != nil {
		return nil, false, err
	}
	oldC, err := d.Engine.ContainerInspect(ctx, rec.OldID)
	if err != nil {
		return nil, false, fmt.Errorf("container %s of deploy %s: %w", rec.OldName, rec.DeployID, err)
	}
	r.oldEP = endpointOf(oldC, r.batonNet, rec.Settings.Port)
	newC, err := d.Engine.ContainerInspect(ctx, rec.NewID)
	switch {
	case errdefs.IsNotFound(err):
		return r, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("container %s of deploy %s: %w", rec.NewName, rec.DeployID, err)
	}
	r.newEP = endpointOf(newC, r.batonNet, rec.Settings.Port)
	r.res.NewImageID = newC.Image
	r.portBindings = newC.HostConfig.PortBindings
	running := newC.State != nil && newC.State.Running && (newC.State.Health == nil || newC.State.Health.Status != "unhealthy")
	return r, running, nil
}
