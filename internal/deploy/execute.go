package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/healthcheck"
)

// execute walks the plan. Before the old container stops, any failure rolls
// back (the old container never stopped serving); the stop is the point of
// no return, after which the deploy rolls forward on a context that ignores
// cancellation, so nothing is left half-done.
func (r *run) execute(ctx context.Context) error {
	p := r.plan
	if p.UpToDate {
		return r.upToDate(ctx)
	}
	if err := r.ready(ctx); err != nil {
		return err
	}
	return r.walk(ctx, p.steps)
}

// walk runs steps: those before the old container's stop roll back on a
// failure, the stop and the rest roll forward. baton promote walks the
// steps after a canary with it.
func (r *run) walk(ctx context.Context, steps []Step) error {
	for i, s := range steps {
		if s.Kind == StepStopOld {
			return r.afterNoReturn(context.WithoutCancel(ctx), steps[i+1:])
		}
		if err := r.step(ctx, s); err != nil {
			if errors.Is(err, errCanaryWaiting) {
				return r.canaryWaiting()
			}
			return r.rollback(ctx, err)
		}
	}
	return fmt.Errorf("plan for %s has no point of no return", r.svc.Name) // decide always adds one
}

// step runs one step before the point of no return.
func (r *run) step(ctx context.Context, s Step) error {
	switch s.Kind {
	case StepExplain:
		why := strings.Join(r.plan.Reasons, " and ")
		if r.facts.Settings.redeployKey() != r.facts.Recorded.redeployKey() {
			why += ", so the new settings are recorded on the container"
		}
		r.event(PhasePull, "", "image unchanged but %s; redeploying", why)
		return nil
	case StepCreate:
		return r.create(ctx)
	case StepJoin:
		return r.join(ctx)
	case StepWarm:
		return r.warm(ctx)
	case StepPreSwitch:
		return r.preSwitch(ctx)
	case StepSwitch:
		return r.switchTraffic(ctx)
	case StepCanary:
		return r.canary(ctx)
	case StepDrain:
		return r.drain(ctx)
	case StepBake:
		return r.bake(ctx)
	}
	return fmt.Errorf("step %s cannot run before the old container stops", s.Kind)
}

// upToDate ends a deploy that has nothing to change. It still makes sure
// traffic reaches the serving container, which also repairs the relay or
// upstream file after a reboot.
func (r *run) upToDate(ctx context.Context) error {
	if err := r.ensureTraffic(ctx, r.facts.Old.ID); err != nil {
		return &PhaseError{Phase: PhaseSwitch, OldServing: true, Err: err}
	}
	r.recordServing()
	r.res.Outcome = OutcomeUpToDate
	r.res.NewID = r.facts.Old.ID
	r.note("%s already runs %s (%s); nothing to do (--force redeploys anyway)", r.svc.Name, r.plan.ref, shortID(r.facts.NewImage.ID))
	return nil
}

// ready makes sure of the service's network and readies traffic. The only host
// change it may make is first-time traffic set-up (relay, upstream file)
// pointing at the old container, which keeps serving.
func (r *run) ready(ctx context.Context) error {
	if r.plan.nets.UseBaton {
		net, err := r.d.Engine.EnsureServiceNetwork(ctx, r.svc.Key)
		if err != nil {
			return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: err}
		}
		if net != r.facts.BatonNet {
			return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: fmt.Errorf("service %s's network is %s, but the plan was made for %s", r.svc.Key, net, r.facts.BatonNet)}
		}
		r.batonNet = net
	}
	if err := r.ensureTraffic(ctx, r.facts.Old.ID); err != nil {
		return &PhaseError{Phase: PhaseSwitch, OldServing: true, Err: err}
	}
	r.recordServing()
	return nil
}

// ensureTraffic attaches the serving container to its service's network (so the
// relay, nginx and probes reach it) and has the traffic mechanism point at it.
func (r *run) ensureTraffic(ctx context.Context, serving string) error {
	t, err := r.d.Traffic(ctx, r.svc, r.plan.settings)
	if err != nil {
		return err
	}
	r.traffic = t
	if r.plan.TrafficMode.moves() {
		ep, err := r.endpoint(ctx, serving, true)
		if err != nil {
			return err
		}
		r.oldEP = ep
		if err := t.Ensure(ctx, ep); err != nil {
			return err
		}
	}
	// Only once the service's traffic has its path without it.
	return r.d.dropKernelPath(ctx, r.svc, r.plan.settings, func(msg string) { r.note("%s", msg) })
}

func (r *run) create(ctx context.Context) error {
	r.enter(PhaseCreate)
	deployID := newDeployID()
	r.res.DeployID = deployID
	name := newName(r.svc.Name, deployID)
	p, old := r.plan, r.facts.Old
	cfg := *p.config
	cfg.Labels = maps.Clone(p.config.Labels)
	cfg.Labels[LabelDeployID] = deployID
	host := *p.hostConfig
	r.portBindings = host.PortBindings

	r.rec = Record{
		DeployID: deployID, Service: r.svc, Phase: PhaseCreate, Settings: p.settings, Flags: r.facts.Sticky, Trigger: r.req.Trigger,
		OldID: old.ID, OldName: r.svc.Name, NewName: name,
		OldImage: old.Config.Image, NewImage: p.ref, StartedAt: r.res.StartedAt,
		Handover: p.nets.AtHandover, Isolated: p.nets.Isolated, CreateAt: time.Now(),
	}
	if err := r.saveRecord(PhaseCreate); err != nil {
		return err
	}
	r.event(PhaseCreate, name, "creating %s from %s", name, p.ref)
	created, err := r.d.Engine.ContainerCreate(ctx, &cfg, &host, &network.NetworkingConfig{EndpointsConfig: p.nets.AtCreate}, nil, name)
	if err != nil {
		return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: fmt.Errorf("creating container %s: %w", name, err)}
	}
	r.rec.NewID = created.ID
	r.res.NewID = created.ID
	return r.saveRecord(PhaseCreate)
}

// join connects the new container to the networks it warms up on.
func (r *run) join(ctx context.Context) error {
	for _, a := range r.plan.nets.BeforeStart {
		if err := r.d.Engine.NetworkConnect(ctx, a.Name, r.rec.NewID, a.Endpoint); err != nil {
			return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: fmt.Errorf("connecting %s to network %s: %w", r.rec.NewName, a.Name, err)}
		}
	}
	if err := r.joinWarmNetworks(ctx); err != nil {
		return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: err}
	}
	return nil
}

// warm starts the new container and waits until it is healthy.
func (r *run) warm(ctx context.Context) (err error) {
	r.enter(PhaseWarm)
	if err := r.saveRecord(PhaseWarm); err != nil {
		return err
	}
	if err := r.d.Engine.ContainerStart(ctx, r.rec.NewID, container.StartOptions{}); err != nil {
		return &PhaseError{Phase: PhaseWarm, OldServing: true, Err: fmt.Errorf("starting %s: %w", r.rec.NewName, err)}
	}
	ep, err := r.endpoint(ctx, r.rec.NewID, false)
	if err != nil {
		return &PhaseError{Phase: PhaseWarm, OldServing: true, Err: err}
	}
	r.newEP = ep
	wait := r.prepare(ctx, ep)
	defer func() { wait(err != nil) }()
	newCtr, err := r.d.Engine.ContainerInspect(ctx, r.rec.NewID)
	if err != nil {
		return &PhaseError{Phase: PhaseWarm, OldServing: true, Err: err}
	}
	s := r.plan.settings
	spec, how := r.healthSpec(newCtr, ep)
	r.event(PhaseWarm, r.rec.NewName, "waiting for %s to be healthy (%s, up to %s)", r.rec.NewName, how, s.HealthTimeout)
	hctx, cancel := context.WithTimeout(ctx, s.HealthTimeout)
	defer cancel()
	if err := healthcheck.Wait(hctx, r.d.Engine, spec); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return &PhaseError{Phase: PhaseWarm, OldServing: true, Err: fmt.Errorf("deploy cancelled while %s was warming up", r.rec.NewName)}
		}
		return &PhaseError{Phase: PhaseWarm, OldServing: true, Err: fmt.Errorf("new container %s: %w", r.rec.NewName, err)}
	}
	r.enter(PhaseHealthy)
	if n := s.WarmupRequests; n > 0 && s.Port != 0 {
		path := s.HTTPProbe
		if path == "" {
			path = "/"
		}
		url := "http://" + ep.Addr() + path
		r.event(PhaseHealthy, r.rec.NewName, "sending %d warm-up requests to %s", n, url)
		if err := healthcheck.WarmUpVia(hctx, url, n, r.dialer()); err != nil {
			return &PhaseError{Phase: PhaseHealthy, OldServing: true, Err: fmt.Errorf("warm-up requests to %s: %w", r.rec.NewName, err)}
		}
	}
	r.event(PhaseHealthy, r.rec.NewName, "%s is healthy", r.rec.NewName)
	return nil
}

// prepare starts the traffic's preparation of next (see preparer) beside
// its warm-up; the returned func waits for it, so no engine call of it
// outlives the warm phase (a rollback removes next), first cancelling it
// when abandon says the warm-up failed.
func (r *run) prepare(ctx context.Context, next Endpoint) (wait func(abandon bool)) {
	p, ok := r.traffic.(preparer)
	if !ok || !r.plan.TrafficMode.moves() {
		return func(bool) {}
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Prepare(pctx, next) }()
	return func(abandon bool) {
		if abandon {
			cancel()
		}
		err := <-done
		cancel()
		if err != nil && !abandon && ctx.Err() == nil && r.d.Log != nil {
			// Finish does it again at the end of the deploy and says so
			// if it fails there too.
			r.d.Log.Debug("readying traffic for the new container beside its warm-up", "container", next.Name, "error", err)
		}
	}
}

// healthSpec decides what "healthy" means for the new container: its Docker
// HEALTHCHECK if it has one, the probes the user asked for, and when there is
// neither, a TCP connect to the app's port.
func (r *run) healthSpec(c container.InspectResponse, ep Endpoint) (healthcheck.Spec, string) {
	s := r.plan.settings
	spec := healthcheck.Spec{Container: c.ID, DockerHealth: healthcheck.HasDockerHealthcheck(c.Config)}
	var how []string
	if spec.DockerHealth {
		how = append(how, "Docker HEALTHCHECK")
		// Docker runs it first one interval after the start: until then
		// baton runs it itself, so the deploy waits for the app, not for
		// Docker's schedule.
		every := earlyHealthInterval
		if r.d.Remote {
			every = remoteEarlyHealthInterval
		}
		if hc, ok := healthcheck.DockerHealthcheck(c.Config); ok && hc.Interval > every && !s.DockerHealthOnly {
			spec.EarlyCheck, spec.EarlyInterval = imageHealthcheck{eng: r.d.Engine, id: c.ID, hc: hc}, every
			how[len(how)-1] += fmt.Sprintf(" (run by baton every %s until Docker says healthy; Docker's first run is due %s after the start)", every, hc.Interval)
		}
	}
	dial := r.dialer()
	if s.HTTPProbe != "" {
		spec.Probes = append(spec.Probes, healthcheck.HTTPVia(ep.Addr(), s.HTTPProbe, dial))
		how = append(how, "GET "+s.HTTPProbe+r.fromWhere())
	}
	if s.TCPProbe {
		spec.Probes = append(spec.Probes, healthcheck.TCPVia(ep.Addr(), dial))
		how = append(how, "TCP connect"+r.fromWhere())
	}
	// On a remote engine without a relay nothing can dial the container
	// (checkRemote refused the probes that would need it).
	reachable := !r.d.Remote || r.plan.TrafficMode == TrafficRelay
	if len(how) == 0 && s.Port != 0 && ep.IP != "" && reachable {
		spec.Probes = append(spec.Probes, healthcheck.TCPVia(ep.Addr(), dial))
		how = append(how, fmt.Sprintf("TCP connect to port %d%s, as the image has no HEALTHCHECK and no --http-probe was given", s.Port, r.fromWhere()))
	}
	if len(how) == 0 {
		spec.Probes = append(spec.Probes, runningFor{eng: r.d.Engine, id: c.ID, d: minRunning})
		how = append(how, fmt.Sprintf("still running after %s: no HEALTHCHECK, probe or port to check", minRunning))
	}
	spec.Progress = func(p healthcheck.Progress) {
		if r.d.Report != nil {
			r.d.Report.Event(Event{Time: time.Now(), Service: r.svc.Key, Phase: PhaseWarm, Container: r.rec.NewName,
				Message: "waiting for health: " + describeProgress(p), Elapsed: time.Since(r.res.StartedAt), Progress: true})
		}
	}
	return spec, strings.Join(how, " + ")
}

func (r *run) switchTraffic(ctx context.Context) error {
	r.enter(PhaseSwitch)
	if err := r.saveRecord(PhaseSwitch); err != nil {
		return err
	}
	r.switched = true
	r.event(PhaseSwitch, r.rec.NewName, "moving traffic to %s (%s)", r.rec.NewName, r.plan.TrafficMode)
	if err := r.traffic.Switch(ctx, r.oldEP, r.newEP); err != nil {
		return &PhaseError{Phase: PhaseSwitch, OldServing: true, Err: err}
	}
	return nil
}

func (r *run) drain(ctx context.Context) error {
	r.enter(PhaseDrain)
	if err := r.saveRecord(PhaseDrain); err != nil {
		return err
	}
	s := r.plan.settings
	if s.DrainSignal != "" {
		// The app hears that traffic moved and can ask its long-lived
		// clients (WebSocket, server-sent events) to reconnect, which the
		// relay or nginx now sends to the new container.
		r.event(PhaseDrain, r.svc.Name, "sending %s to %s (--drain-signal)", s.DrainSignal, r.svc.Name)
		if err := r.d.Engine.ContainerKill(ctx, r.rec.OldID, s.DrainSignal); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
			// Not fatal: the drain still bounds the wait, and cuts what
			// the app did not close.
			r.warn("sending %s to %s: %v", s.DrainSignal, r.svc.Name, err)
		}
	}
	r.event(PhaseDrain, r.svc.Name, "waiting for requests in flight and long-lived connections on %s to finish (up to %s)", r.svc.Name, s.Drain)
	rep, err := r.traffic.Drain(ctx, r.oldEP, s.Drain)
	if err != nil {
		return &PhaseError{Phase: PhaseDrain, OldServing: true, Err: err}
	}
	rep.Signal = s.DrainSignal
	r.res.Drain = &rep
	if rep.Counted {
		msg := fmt.Sprintf("drained %s in %s: waited for %d connection(s) open when traffic moved", r.svc.Name, rep.Duration.Round(time.Millisecond), rep.Waited)
		if rep.KernelWaited > 0 {
			msg += fmt.Sprintf(" (%d on the kernel path)", rep.KernelWaited)
		}
		switch {
		case rep.Cut > 0:
			msg += fmt.Sprintf("; %d still open after --drain %s are cut by the stop", rep.Cut, s.Drain)
		case !rep.KernelUncounted:
			msg += "; none cut"
		}
		if rep.KernelUncounted {
			msg += "; the kernel path's could not be counted (see the warning): any still open are cut by the stop"
		}
		r.event(PhaseDrain, r.svc.Name, "%s", msg)
		r.note("%s", msg)
	}
	return nil
}

// preSwitch runs the operator's --pre-switch command in the healthy new
// container, before traffic moves: a migration, cache warming, a smoke
// test. A non-zero exit aborts the deploy with the old container serving
// and the command's output (its tail, secrets redacted) in the error.
func (r *run) preSwitch(ctx context.Context) error {
	line := r.plan.settings.PreSwitch
	argv, err := SplitCommand(line)
	if err != nil {
		return &PhaseError{Phase: PhaseHealthy, OldServing: true, Err: fmt.Errorf("--pre-switch %q: %w", line, err)}
	}
	r.event(PhaseHealthy, r.rec.NewName, "running %s in %s (--pre-switch)", line, r.rec.NewName)
	res, err := r.d.Engine.Exec(ctx, r.rec.NewID, argv)
	if err != nil {
		return &PhaseError{Phase: PhaseHealthy, OldServing: true, Err: fmt.Errorf("--pre-switch in %s: %w", r.rec.NewName, err)}
	}
	out := preSwitchOutput(res, r.plan.config.Env)
	if res.ExitCode != 0 {
		return &PhaseError{Phase: PhaseHealthy, OldServing: true, Err: fmt.Errorf("--pre-switch %s in %s exited %d: %s", line, r.rec.NewName, res.ExitCode, out)}
	}
	r.event(PhaseHealthy, r.rec.NewName, "--pre-switch %s exited 0 in %s: %s", line, r.rec.NewName, out)
	r.note("--pre-switch %s ran in %s before traffic moved", line, r.rec.NewName)
	return nil
}

// afterNoReturn stops the old container, then walks the rest of the plan
// (handover, finalize). It runs on a context that ignores cancellation.
func (r *run) afterNoReturn(ctx context.Context, rest []Step) error {
	r.enter(PhaseStopOld)
	if err := r.saveRecord(PhaseStopOld); err != nil {
		// Not yet past the point of no return: nothing was stopped.
		return r.rollback(ctx, err)
	}
	r.event(PhaseStopOld, r.svc.Name, "stopping %s", r.svc.Name)
	if err := stopContainer(ctx, r.d.Engine, r.rec.OldID, r.plan.settings.StopTimeout); err != nil {
		// The stop failed, so the old container may still run: check before
		// deciding which way to go.
		if c, ierr := r.d.Engine.ContainerInspect(ctx, r.rec.OldID); ierr == nil && c.State.Running {
			return r.rollback(ctx, fmt.Errorf("stopping %s: %w", r.svc.Name, err))
		}
	}
	return r.rollForward(ctx, rest)
}

// rollForward completes a deploy whose old container has stopped by walking
// the steps after the point of no return. Used by afterNoReturn and by
// recovery (with the steps rebuilt from the deploy record).
func (r *run) rollForward(ctx context.Context, steps []Step) error {
	for _, s := range steps {
		switch s.Kind {
		case StepHandover:
			r.enter(PhaseHandover)
			if err := r.saveRecord(PhaseHandover); err != nil {
				r.warn("could not record the handover phase: %v", err)
			}
			if err := r.handover(ctx); err != nil {
				return r.rescue(ctx, PhaseHandover, err)
			}
		case StepFinalize:
			r.enter(PhaseFinalize)
			if err := r.saveRecord(PhaseFinalize); err != nil {
				r.warn("could not record the finalize phase: %v", err)
			}
			if err := r.finalize(ctx); err != nil {
				return &PhaseError{Phase: PhaseFinalize, OldServing: false, Err: fmt.Errorf("%w (the new container serves; run baton status %s to converge)", err, r.svc.Name)}
			}
		default:
			return &PhaseError{Phase: r.phase, OldServing: false, Err: fmt.Errorf("step %s cannot run after the old container stopped", s.Kind)}
		}
	}
	r.res.Outcome = OutcomeDeployed
	r.res.OldServing = false
	return nil
}

func (r *run) handover(ctx context.Context) error {
	cur, err := r.d.Engine.ContainerInspect(ctx, r.rec.NewID)
	if err != nil {
		return err
	}
	var todo []dockerctl.NetworkAttachment
	for _, a := range r.rec.Handover {
		if _, ok := cur.NetworkSettings.Networks[a.Name]; !ok {
			todo = append(todo, a) // else connected by an earlier, interrupted run
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := r.waitHostPortsFree(ctx); err != nil {
		return err
	}
	for _, a := range todo {
		r.event(PhaseHandover, r.rec.NewName, "connecting %s to network %s", r.rec.NewName, a.Name)
		if err := r.d.Engine.NetworkConnect(ctx, a.Name, r.rec.NewID, a.Endpoint); err != nil {
			return fmt.Errorf("connecting %s to network %s: %w", r.rec.NewName, a.Name, err)
		}
	}
	return nil
}

// waitHostPortsFree waits (briefly) until the old container's fixed host
// ports can be bound, since Docker frees them asynchronously after a stop.
func (r *run) waitHostPortsFree(ctx context.Context) error {
	if r.d.HostPortFree == nil {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for port, bindings := range r.portBindings {
		for _, b := range bindings {
			if b.HostPort == "" || b.HostPort == "0" {
				continue
			}
			for !r.d.HostPortFree(b.HostIP, b.HostPort, port.Proto()) {
				if time.Now().After(deadline) {
					return fmt.Errorf("host port %s:%s is still in use after %s stopped; not connecting %s (a failed connect would break its networking)", b.HostIP, b.HostPort, r.svc.Name, r.rec.NewName)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

func (r *run) finalize(ctx context.Context) error {
	r.event(PhaseFinalize, r.rec.NewName, "removing %s (its volumes stay) and renaming %s to %s", r.rec.OldName, r.rec.NewName, r.rec.OldName)
	if err := removeContainer(ctx, r.d.Engine, r.rec.OldID, container.RemoveOptions{}); err != nil {
		return fmt.Errorf("removing old container %s: %w", r.rec.OldName, err)
	}
	if err := r.d.Engine.ContainerRename(ctx, r.rec.NewID, r.rec.OldName); err != nil {
		// A baton killed right after the rename, before the record went,
		// leaves the new container already named: the rename is done.
		if c, ierr := r.d.Engine.ContainerInspect(ctx, r.rec.NewID); ierr != nil || strings.TrimPrefix(c.Name, "/") != r.rec.OldName {
			return fmt.Errorf("renaming %s to %s: %w", r.rec.NewName, r.rec.OldName, err)
		}
	}
	if r.traffic != nil && r.plan.TrafficMode.moves() {
		cur := r.newEP
		cur.Name = r.rec.OldName
		if err := r.traffic.Finish(ctx, cur, r.oldEP); err != nil {
			r.warn("tidying traffic after the deploy: %v", err)
		}
	}
	r.recordFinished(ctx)
	if err := r.d.State.RemoveRecord(r.svc.Key); err != nil {
		r.warn("%v", err)
	}
	r.event(PhaseFinalize, r.rec.OldName, "%s now runs %s", r.rec.OldName, r.plan.ref)
	return nil
}

// rollback undoes a deploy that failed before the old container stopped: the
// old one keeps (or goes back to) serving and the new one is removed.
func (r *run) rollback(ctx context.Context, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	r.event(r.phase, r.svc.Name, "deploy failed, rolling back: %v", cause)
	var problems []string
	if r.switched {
		t0 := time.Now()
		if err := r.traffic.Switch(ctx, r.newEP, r.oldEP); err != nil {
			problems = append(problems, "moving traffic back: "+err.Error())
		} else if r.reverted && r.d.Report != nil {
			r.event(r.phase, r.svc.Name, "traffic is back on %s (the %s call took %s)", r.svc.Name, r.plan.TrafficMode, time.Since(t0).Round(time.Millisecond))
		}
		if len(problems) > 0 {
			// Traffic did not move back: draining would wait for nothing.
		} else if rep, err := r.traffic.Drain(ctx, r.newEP, r.plan.settings.Drain); err != nil {
			problems = append(problems, "draining the new container: "+err.Error())
		} else if r.reverted && rep.Counted {
			// What the reverted container broke, as the relay counted it:
			// the operator's (and a test's) bound on the requests it cost.
			r.event(r.phase, r.rec.NewName, "drained %s: %d connections were open on it when traffic moved back, %d cut; the relay counted %d resets and %d failed dials of it",
				r.rec.NewName, rep.Waited, rep.Cut, rep.Resets, rep.DialErrors)
		}
	}
	if r.rec.NewID != "" {
		if err := removeContainer(ctx, r.d.Engine, r.rec.NewID, container.RemoveOptions{Force: true}); err != nil {
			problems = append(problems, fmt.Sprintf("removing %s: %v", r.rec.NewName, err))
		}
	}
	if r.switched && len(problems) == 0 {
		// The old container serves alone again, as after a deploy: the
		// kernel path carries its traffic again (the other modes have
		// nothing to tidy). Traffic reaches it through the relay meanwhile,
		// so a failure here costs speed, not requests.
		if err := r.traffic.Finish(ctx, r.oldEP, r.newEP); err != nil {
			r.warn("tidying traffic after the rollback: %v", err)
		}
	}
	if len(problems) == 0 {
		if err := r.d.State.RemoveRecord(r.svc.Key); err != nil {
			problems = append(problems, err.Error())
		}
	}
	var pe *PhaseError
	if !errors.As(cause, &pe) {
		pe = &PhaseError{Phase: r.phase, Err: cause}
	}
	pe.OldServing = true
	r.rolledBack = true
	if len(problems) > 0 {
		pe.Err = fmt.Errorf("%w; %s keeps serving, but the rollback left work: %s (baton status %s converges it)", pe.Err, r.svc.Name, strings.Join(problems, "; "), r.svc.Name)
		return pe
	}
	pe.Err = fmt.Errorf("%w; %s keeps serving %s", pe.Err, r.svc.Name, r.res.OldImage)
	return pe
}

// rescue handles a failure after the old container stopped: if the new
// container cannot take over, bring the old one back.
func (r *run) rescue(ctx context.Context, phase Phase, cause error) error {
	r.event(phase, r.svc.Name, "handover failed: %v; restarting %s", cause, r.svc.Name)
	restartErr := r.d.Engine.ContainerStart(ctx, r.rec.OldID, container.StartOptions{})
	if restartErr == nil && r.switched {
		if ep, err := r.endpoint(ctx, r.rec.OldID, false); err == nil {
			r.oldEP = ep
			restartErr = r.traffic.Switch(ctx, r.newEP, ep)
		} else {
			restartErr = err
		}
	}
	if restartErr != nil {
		return &PhaseError{Phase: phase, OldServing: false, Err: classify(ErrOldStopped, "%v; restarting %s also failed: %v", cause, r.svc.Name, restartErr)}
	}
	if err := removeContainer(ctx, r.d.Engine, r.rec.NewID, container.RemoveOptions{Force: true}); err != nil {
		r.warn("removing %s: %v", r.rec.NewName, err)
	}
	if r.switched {
		if err := r.traffic.Finish(ctx, r.oldEP, r.newEP); err != nil {
			r.warn("tidying traffic after the restart: %v", err)
		}
	}
	if err := r.d.State.RemoveRecord(r.svc.Key); err != nil {
		r.warn("%v", err)
	}
	return &PhaseError{Phase: phase, OldServing: false, Err: classify(ErrOldStopped, "%v; %s was started again and serves, after a short outage", cause, r.svc.Name)}
}
