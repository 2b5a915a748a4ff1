package swarmdeploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/baton-sh/baton/internal/deploy"
)

// rollbackWait bounds the wait for a rollback baton asked for.
const rollbackWait = 5 * time.Minute

// watch follows the update Swarm started until it completes, rolls back or
// runs out of time, printing each task's progress, and turns the end into
// baton's outcome.
func (d *Deployer) watch(ctx context.Context, svc swarm.Service, ref, cur string, o Options, res *deploy.Result) error {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = d.defaultTimeout(ctx, svc, o)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, msg, err := d.waitUpdate(wctx, svc, false)
	switch {
	case err == nil && st == swarm.UpdateStateCompleted:
		res.Outcome = deploy.OutcomeDeployed
		res.NewImage = ref
		if tasks, err := d.tasks(ctx, svc.ID); err == nil {
			if slots := doubledSlots(tasks); len(slots) > 0 {
				note := fmt.Sprintf("service %s: Swarm runs two tasks %s (a node drained or a task restarted during the update makes Swarm's restart and its update each start one); Swarm leaves the extra until its next update of the service", o.Service, SlotsPhrase(slots))
				res.Notes = append(res.Notes, note)
				d.event(deploy.PhaseFinalize, note, true)
			}
		}
		d.event(deploy.PhaseFinalize, fmt.Sprintf("service %s runs %s", o.Service, ref), false)
		return nil
	case err == nil && st == swarm.UpdateStateRollbackCompleted:
		return &deploy.PhaseError{Phase: deploy.PhaseHealthy, OldServing: true,
			Err: fmt.Errorf("service %s: the new tasks failed (%s); Swarm rolled back and it keeps serving %s", o.Service, msg, cur)}
	case err == nil && st == swarm.UpdateStatePaused:
		return &deploy.PhaseError{Phase: deploy.PhaseHealthy, OldServing: false,
			Err: fmt.Errorf("service %s: the update paused (%s), as --update-failure-action pause asks; its tasks may run either image: baton rollback %s or deploy again", o.Service, msg, o.Service)}
	case err == nil:
		return &deploy.PhaseError{Phase: deploy.PhaseHealthy, OldServing: false,
			Err: fmt.Errorf("service %s: update ended %s (%s)", o.Service, st, msg)}
	}
	// Out of time or cancelled: ask Swarm to go back, on a context of its
	// own (the caller's may be the one that was cancelled).
	why := err
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		why = fmt.Errorf("not finished within %s", timeout)
	}
	d.event(deploy.PhaseSwitch, fmt.Sprintf("service %s: update %v; rolling back", o.Service, why), true)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer rcancel()
	if rerr := d.rollback(rctx, o.Service); rerr != nil {
		return &deploy.PhaseError{Phase: deploy.PhaseHealthy, OldServing: false,
			Err: fmt.Errorf("service %s: update %v, and the rollback failed: %w", o.Service, why, rerr)}
	}
	return &deploy.PhaseError{Phase: deploy.PhaseHealthy, OldServing: true,
		Err: fmt.Errorf("service %s: update %v; rolled back, it keeps serving %s", o.Service, why, cur)}
}

// defaultTimeout allows every batch of tasks its health timeout, monitor
// window and delay, plus a minute for scheduling and pulls.
func (d *Deployer) defaultTimeout(ctx context.Context, svc swarm.Service, o Options) time.Duration {
	n := uint64(1)
	if m := svc.Spec.Mode.Replicated; m != nil && m.Replicas != nil {
		n = *m.Replicas
	} else if tasks, err := d.tasks(ctx, svc.ID); err == nil {
		n = uint64(max(len(tasks), 1))
	}
	uc := svc.Spec.UpdateConfig
	if uc == nil { // Swarm's defaults
		uc = &swarm.UpdateConfig{Parallelism: 1, Monitor: 5 * time.Second}
	}
	par := uc.Parallelism
	if par == 0 {
		par = n
	}
	batches := (n + par - 1) / par
	per := orDur(o.HealthTimeout, DefaultHealth) + uc.Monitor + uc.Delay
	return time.Duration(batches)*per + time.Minute
}

func (d *Deployer) tasks(ctx context.Context, serviceID string) ([]swarm.Task, error) {
	f := filters.NewArgs(filters.Arg("service", serviceID))
	return d.Engine.TaskList(ctx, swarm.TaskListOptions{Filters: f})
}

// waitUpdate polls the service's UpdateStatus until the update (or, with
// rollback, the rollback) that began at or after svc.UpdatedAt reaches a
// final state, reporting task state changes on the way.
func (d *Deployer) waitUpdate(ctx context.Context, svc swarm.Service, rollback bool) (swarm.UpdateState, string, error) {
	poll := d.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	since := svc.UpdatedAt.Add(-time.Second)
	seen := map[string]swarm.TaskState{}
	lastMsg := ""
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		s, _, err := d.Engine.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
		if err != nil {
			if ctx.Err() != nil {
				return "", "", ctx.Err()
			}
			return "", "", fmt.Errorf("service %s: inspect: %w", svc.Spec.Name, err)
		}
		if tasks, err := d.tasks(ctx, svc.ID); err == nil {
			d.reportTasks(s, tasks, seen)
		}
		if us := s.UpdateStatus; us != nil && us.StartedAt != nil && !us.StartedAt.Before(since) {
			if us.Message != lastMsg && us.Message != "" {
				lastMsg = us.Message
				d.event(deploy.PhaseHealthy, fmt.Sprintf("service %s: %s (%s)", svc.Spec.Name, us.State, us.Message), false)
			}
			switch us.State {
			case swarm.UpdateStateCompleted, swarm.UpdateStatePaused:
				if !rollback {
					return us.State, us.Message, nil
				}
			case swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused:
				return us.State, us.Message, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-tick.C:
		}
	}
}

// reportTasks prints each live task's state when it changes, like
// docker service update's progress: slot, short ID, node, image, state.
func (d *Deployer) reportTasks(s swarm.Service, tasks []swarm.Task, seen map[string]swarm.TaskState) {
	sort.Slice(tasks, func(i, j int) bool {
		if tasks[i].Slot != tasks[j].Slot {
			return tasks[i].Slot < tasks[j].Slot
		}
		return tasks[i].CreatedAt.Before(tasks[j].CreatedAt)
	})
	for _, t := range tasks {
		st := t.Status.State
		if prev, ok := seen[t.ID]; ok && prev == st {
			continue
		}
		_, known := seen[t.ID]
		seen[t.ID] = st
		if !known && (st == swarm.TaskStateShutdown || st == swarm.TaskStateComplete || st == swarm.TaskStateFailed || st == swarm.TaskStateRejected) {
			continue // history from before this deploy
		}
		img := ""
		if cs := t.Spec.ContainerSpec; cs != nil {
			img = cs.Image
		}
		name := s.Spec.Name
		if t.Slot > 0 {
			name = fmt.Sprintf("%s.%d", name, t.Slot)
		}
		msg := fmt.Sprintf("task %s (%s) on node %s: %s, %s", name, short(t.ID), short(t.NodeID), st, img)
		if t.Status.Err != "" {
			msg += ": " + t.Status.Err
		}
		if d.Report != nil {
			d.Report.Event(deploy.Event{Time: time.Now(), Phase: deploy.PhaseWarm, Service: s.Spec.Name,
				Container: short(t.ID), Image: img, Message: msg, Warning: t.Status.Err != "", Elapsed: time.Since(d.start)})
		}
	}
}

// doubledSlots lists the slots in which more than one task is meant to
// run. swarmkit's updater counts such a slot as dirty but only acts on it
// at its next pass over the service, so an update that ends with one (a
// node drained mid-update: its restart supervisor and the start-first
// update each started a task in the slot) leaves an extra replica running.
// The restart's task waits, desired state ready, until the drained task
// has stopped, which can be after the update completed: it counts too.
func doubledSlots(tasks []swarm.Task) []int {
	n := map[int]int{}
	for _, t := range tasks {
		if t.Slot > 0 && (t.DesiredState == swarm.TaskStateRunning || t.DesiredState == swarm.TaskStateReady) {
			n[t.Slot]++
		}
	}
	var out []int
	for slot, c := range n {
		if c > 1 {
			out = append(out, slot)
		}
	}
	sort.Ints(out)
	return out
}

// SlotsPhrase is how baton names doubled slots: "in slot 2", "in each of
// slots 1, 3" (a test looks for it).
func SlotsPhrase(slots []int) string {
	s := make([]string, len(slots))
	for i, v := range slots {
		s[i] = strconv.Itoa(v)
	}
	if len(s) == 1 {
		return "in slot " + s[0]
	}
	return "in each of slots " + strings.Join(s, ", ")
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// converge lets an update that is still running (a baton killed mid-deploy
// left it so; Swarm carries on without it) finish before a new one starts.
func (d *Deployer) converge(ctx context.Context, svc swarm.Service, o Options, res *deploy.Result) (swarm.Service, error) {
	us := svc.UpdateStatus
	if us == nil || (us.State != swarm.UpdateStateUpdating && us.State != swarm.UpdateStateRollbackStarted) {
		return svc, nil
	}
	d.event(deploy.PhaseRecover, fmt.Sprintf("service %s: an earlier update is still %s (%s); waiting for it to finish", svc.Spec.Name, us.State, us.Message), true)
	from := svc
	if us.StartedAt != nil {
		from.UpdatedAt = *us.StartedAt
	}
	wctx, cancel := context.WithTimeout(ctx, d.defaultTimeout(ctx, svc, o))
	defer cancel()
	st, msg, err := d.waitUpdate(wctx, from, us.State == swarm.UpdateStateRollbackStarted)
	if err != nil {
		return svc, &deploy.PhaseError{Phase: deploy.PhaseRecover, OldServing: false,
			Err: fmt.Errorf("service %s: the earlier update did not finish: %w", svc.Spec.Name, err)}
	}
	res.Recovered = fmt.Sprintf("an earlier update of service %s was still running; it ended %s (%s)", svc.Spec.Name, st, msg)
	d.event(deploy.PhaseRecover, res.Recovered, false)
	now, _, err := d.Engine.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		return svc, fmt.Errorf("service %s: inspect: %w", svc.Spec.Name, err)
	}
	return now, nil
}

// Rollback returns the service to its previous spec (Swarm keeps one) and
// waits until the rollback completes.
func (d *Deployer) Rollback(ctx context.Context, o Options) (*deploy.Result, error) {
	res := &deploy.Result{Target: o.Service, Service: o.Service, Trigger: o.Trigger, Who: o.Who,
		Traffic: "swarm", StartedAt: time.Now(), Outcome: deploy.OutcomeFailed, OldServing: true}
	d.start = res.StartedAt
	err := d.rollbackResult(ctx, o, res)
	res.Duration = time.Since(res.StartedAt)
	if err != nil {
		res.Error = err.Error()
		var pe *deploy.PhaseError
		if errors.As(err, &pe) {
			res.OldServing = pe.OldServing
		}
	} else {
		res.Outcome = deploy.OutcomeDeployed
	}
	res.ExitCode = deploy.ExitCode(err)
	return res, err
}

func (d *Deployer) rollbackResult(ctx context.Context, o Options, res *deploy.Result) error {
	svc, found, err := FindService(ctx, d.Engine, o.Service)
	if err != nil {
		return err
	}
	if !found {
		return kinded(deploy.ErrNotFound, "no swarm service named %s on this engine", o.Service)
	}
	if !o.DryRun {
		var unlock func()
		if svc, unlock, err = d.lock(ctx, svc); err != nil {
			return err
		}
		defer unlock()
	}
	if svc.PreviousSpec == nil || svc.PreviousSpec.TaskTemplate.ContainerSpec == nil {
		return kinded(deploy.ErrInvalid, "service %s has no previous spec to roll back to", o.Service)
	}
	res.OldImage = svc.Spec.TaskTemplate.ContainerSpec.Image
	res.NewImage = svc.PreviousSpec.TaskTemplate.ContainerSpec.Image
	if o.DryRun {
		res.Outcome = deploy.OutcomeDryRun
		res.Notes = append(res.Notes, fmt.Sprintf("image: %s -> %s", res.OldImage, res.NewImage))
		return nil
	}
	if err := d.checkMesh(svc); err != nil {
		return err
	}
	if svc, err = d.converge(ctx, svc, o, res); err != nil {
		return err
	}
	d.event(deploy.PhaseSwitch, fmt.Sprintf("rolling service %s back to %s", o.Service, res.NewImage), false)
	if err := d.rollback(ctx, o.Service); err != nil {
		return &deploy.PhaseError{Phase: deploy.PhaseSwitch, OldServing: false, Err: err}
	}
	d.event(deploy.PhaseFinalize, fmt.Sprintf("service %s runs %s", o.Service, res.NewImage), false)
	return nil
}

// rollback asks Swarm for its server-side rollback to the previous spec
// (docker service rollback) and waits until it completes.
func (d *Deployer) rollback(ctx context.Context, name string) error {
	svc, _, err := d.Engine.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return fmt.Errorf("service %s: inspect: %w", name, err)
	}
	if _, err := d.Engine.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{Rollback: "previous"}); err != nil {
		return fmt.Errorf("service %s: rollback: %w", name, err)
	}
	after, _, err := d.Engine.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		return fmt.Errorf("service %s: inspect: %w", name, err)
	}
	st, msg, err := d.waitUpdate(ctx, after, true)
	if err != nil {
		return fmt.Errorf("service %s: waiting for the rollback: %w", name, err)
	}
	if st != swarm.UpdateStateRollbackCompleted {
		return fmt.Errorf("service %s: rollback ended %s (%s)", name, st, msg)
	}
	return nil
}
