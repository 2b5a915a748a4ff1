// Package deploy is baton's deploy state machine: it replaces a running
// container with one from a new image without dropping a request, or leaves
// the old one serving and says why.
//
// The phases run in order: resolve, pull, create, warm, healthy, switch,
// drain, stop-old, handover, finalize. Stopping the old container is the
// point of no return: a failure before it rolls back (the old container never
// stopped serving); after it, the deploy rolls forward. Every phase boundary
// is written to a deploy record, so a baton killed at any step leaves enough
// for the next run to converge (see recover.go).
//
// Plan, then execute: a deploy gathers its facts without changing anything
// (gather.go), one pure decision turns them into a Plan (plan.go), and the
// executor walks the plan's steps (execute.go). --dry-run prints the same
// plan, so it says what the deploy would do; recovery rebuilds the steps
// after the point of no return from the deploy record.
package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"

	"github.com/baton-sh/baton/healthcheck"
	"github.com/baton-sh/baton/internal/state"
)

// Deployer runs deploys. All fields but Log and HostPortFree are required.
type Deployer struct {
	Engine  Engine
	State   *state.Dir
	Traffic TrafficFactory
	Report  Reporter
	Log     *slog.Logger
	// Policy is what the operator allows (upstream directories, the
	// configuration file's settings); the zero value allows the defaults.
	Policy Policy
	// HostPortFree reports whether a host port can be bound now. It guards
	// the handover connect (a connect that fails on a held port breaks the
	// container's networking). Nil skips the check.
	HostPortFree func(ip string, port string, proto string) bool
	// OnFinish, if set, is called with the result of every deploy that is
	// not a dry run, successful or not: the journal, notifications and
	// metrics hang off it.
	OnFinish func(*Result)
	// SpecFor, if set, may supply the Spec of a request that has none, for
	// targets whose new configuration someone else defines (a compose
	// container deployed by name). A nil result means a plain copy.
	SpecFor func(ctx context.Context, old container.InspectResponse, newRef string, dryRun bool, report func(string)) SpecFunc
	// Remote says the engine runs on another machine, so its containers'
	// addresses are not reachable from here: probes and warm-up requests
	// go through Reach, and what needs them must be able to use it.
	Remote bool
	// NginxHere says nginx runs where baton runs even when the engine does
	// not: a rollout across hosts shares one nginx on this machine, whose
	// upstream file and reload command are local.
	NginxHere bool
	// Reach returns how to connect to addresses on a service's network
	// from where its containers run (through its relay container). Nil,
	// or a nil result, dials directly.
	Reach func(svc Service) healthcheck.Dialer
	// KernelRoutes finds and removes the kernel paths of this host
	// (--kernel-path); nil for an engine on another machine, whose rules
	// are not here.
	KernelRoutes KernelRoutes
}

// KernelRoutes is what a deploy needs of the kernel paths on this host: a
// service whose kernel path is off (the flag, the configuration file, a
// move to another way of reaching nginx) must not keep one, on the host or
// in its nginx container (nginxContainer, "" for none).
type KernelRoutes interface {
	Has(ctx context.Context, service, nginxContainer string) (bool, error)
	Remove(ctx context.Context, service, nginxContainer string) error
}

// run is one deploy: the facts it was decided on and the plan, both fixed
// once decided, and the progress of walking the plan.
type run struct {
	d     *Deployer
	req   Request
	res   *Result
	svc   Service
	facts *Facts // nil in a recovery, which works from the deploy record
	plan  *Plan
	progress
}

// progress is what changes while the executor walks a plan.
type progress struct {
	traffic  Traffic
	batonNet string // the service's network, once made sure of
	rec      Record
	newEP    Endpoint
	oldEP    Endpoint
	phase    Phase
	phaseT0  time.Time
	switched bool
	// reverted: a bake or canary failed and the rollback sends traffic
	// back to the old container; the outcome is "reverted".
	reverted bool
	// rolledBack: the rollback already said what keeps serving.
	rolledBack bool
	// portBindings are the new container's host port bindings, checked free
	// before the handover connect.
	portBindings nat.PortMap
}

// Deploy replaces req.Target's container with one running the new image.
// The Result is always non-nil; the error, if any, wraps ErrInvalid,
// ErrNotFound, ErrNotRunning or ErrUnsupported (nothing changed), or is a
// *PhaseError saying whether the old container still serves.
func (d *Deployer) Deploy(ctx context.Context, req Request) (*Result, error) {
	r := &run{d: d, req: req, res: &Result{StartedAt: time.Now(), Outcome: OutcomeFailed, OldServing: true,
		Target: req.Target, Trigger: req.Trigger, Who: req.Who}}
	if r.req.Pull == "" {
		r.req.Pull = PullAlways
	}
	err := r.deploy(ctx)
	r.enter("") // closes the last phase's timing
	if d.OnFinish != nil && !req.DryRun {
		defer func() { d.OnFinish(r.res) }()
	}
	r.res.Duration = time.Since(r.res.StartedAt)
	if err != nil {
		r.res.Outcome = OutcomeFailed
		if r.reverted {
			r.res.Outcome = OutcomeReverted
		}
		r.res.Error = err.Error()
		var pe *PhaseError
		if errors.As(err, &pe) {
			r.res.OldServing = pe.OldServing
			if pe.OldServing && !r.rolledBack && r.svc.Name != "" {
				// Failed before anything was created: say so, as a
				// rollback does.
				pe.Err = fmt.Errorf("%w; %s keeps serving %s", pe.Err, r.svc.Name, orUnknown(r.res.OldImage))
				err = pe
			}
		}
	}
	r.res.ExitCode = ExitCode(err)
	return r.res, err
}

func (r *run) deploy(ctx context.Context) error {
	r.enter(PhaseResolve)
	old, err := inspectTarget(ctx, r.d.Engine, r.req.Target)
	if errors.Is(err, ErrNotFound) && !r.req.DryRun {
		// A deploy killed between removing the old container and renaming
		// the new one leaves no container under the service's name.
		if note, rerr := r.d.recoverMissing(ctx, r.req.Target, r.event); rerr != nil {
			return &PhaseError{Phase: PhaseRecover, OldServing: false, Err: rerr}
		} else if note != "" {
			r.res.Recovered = note
			old, err = inspectTarget(ctx, r.d.Engine, r.req.Target)
		}
	}
	if err != nil {
		return err
	}
	if err := notATask(old); err != nil {
		return err
	}
	r.svc = ServiceOf(old)
	r.res.Service = r.svc.Key
	r.res.Container = r.svc.Name

	if r.req.DryRun {
		// No lock, no pull, no converging of leftovers (they are listed).
		if err := r.decide(ctx, old); err != nil {
			return err
		}
		r.res.Plan = r.plan
		r.res.Outcome = OutcomeDryRun
		return nil
	}

	unlock, err := r.d.State.Lock(ctx, r.svc.Key, func() {
		r.event(PhaseResolve, "", "another deploy of %s is running; waiting for it to finish", r.svc.Key)
	})
	if err != nil {
		return &PhaseError{Phase: PhaseResolve, OldServing: true, Err: err}
	}
	defer unlock()

	if note, err := r.d.converge(ctx, r.svc, r.event); err != nil {
		return &PhaseError{Phase: PhaseRecover, OldServing: false, Err: err}
	} else if note != "" {
		r.res.Recovered = note
	}
	var pending Record
	if found, err := r.d.State.ReadRecord(r.svc.Key, &pending); err != nil {
		return &PhaseError{Phase: PhaseRecover, OldServing: true, Err: err}
	} else if found && waitingCanary(pending) {
		return canaryPendingError(pending)
	}
	r.d.pruneMirrors(ctx, r.event)
	// Converging may have finished an interrupted deploy: look again.
	if old, err = inspectTarget(ctx, r.d.Engine, r.svc.Name); err != nil {
		return err
	}
	if err := r.decide(ctx, old); err != nil {
		return err
	}
	return r.execute(ctx)
}

// decide gathers the facts and makes the plan; a deploy and a dry run come
// here alike, so they decide alike.
func (r *run) decide(ctx context.Context, old container.InspectResponse) error {
	f, err := r.gather(ctx, old)
	if err != nil {
		return err
	}
	p, err := decide(f)
	if err != nil {
		return err
	}
	r.facts, r.plan = f, p
	return nil
}

// endpoint inspects a container for its address on its service's network,
// attaching it first when attach is set (a container deployed before baton
// managed it is not on that network yet; attaching an internal network
// changes nothing else about it).
func (r *run) endpoint(ctx context.Context, id string, attach bool) (Endpoint, error) {
	c, err := r.d.Engine.ContainerInspect(ctx, id)
	if err != nil {
		return Endpoint{}, err
	}
	if r.batonNet == "" {
		if r.batonNet, err = r.d.Engine.EnsureServiceNetwork(ctx, r.svc.Key); err != nil {
			return Endpoint{}, err
		}
	}
	if _, ok := c.NetworkSettings.Networks[r.batonNet]; !ok && attach {
		name := strings.TrimPrefix(c.Name, "/")
		r.event(r.phase, name, "attaching %s to %s, its service's internal network, so the relay, nginx and probes can reach it", name, r.batonNet)
		if err := r.d.Engine.NetworkConnect(ctx, r.batonNet, id, &network.EndpointSettings{}); err != nil {
			return Endpoint{}, fmt.Errorf("attaching %s to network %s: %w", name, r.batonNet, err)
		}
		if c, err = r.d.Engine.ContainerInspect(ctx, id); err != nil {
			return Endpoint{}, err
		}
	}
	return endpointOf(c, r.batonNet, r.plan.settings.Port), nil
}

func endpointOf(c container.InspectResponse, batonNet string, port int) Endpoint {
	ep := Endpoint{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), Port: port}
	if c.State != nil {
		ep.PID = c.State.Pid
	}
	if c.NetworkSettings != nil {
		if n, ok := c.NetworkSettings.Networks[batonNet]; ok && n != nil {
			ep.IP = n.IPAddress
		}
	}
	return ep
}

func (r *run) saveRecord(p Phase) error {
	r.rec.Phase = p
	if err := r.d.State.WriteRecord(r.svc.Key, r.rec); err != nil {
		return &PhaseError{Phase: p, OldServing: true, Err: err}
	}
	return nil
}

func (r *run) enter(p Phase) {
	now := time.Now()
	if r.phase != "" {
		r.res.Phases = append(r.res.Phases, PhaseTime{Phase: r.phase, Duration: now.Sub(r.phaseT0)})
	}
	r.phase, r.phaseT0 = p, now
	if p != "" && r.d.Log != nil {
		r.d.Log.Debug("phase", "phase", string(p), "service", r.svc.Key)
	}
}

func (r *run) event(p Phase, ctr string, format string, args ...any) {
	if r.d.Report == nil {
		return
	}
	r.d.Report.Event(Event{Time: time.Now(), Service: r.svc.Key, Phase: p, Container: ctr, Message: fmt.Sprintf(format, args...), Elapsed: time.Since(r.res.StartedAt)})
}

func (r *run) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.res.Notes = append(r.res.Notes, "warning: "+msg)
	if r.d.Report != nil {
		r.d.Report.Event(Event{Time: time.Now(), Service: r.svc.Key, Phase: r.phase, Message: msg, Warning: true})
	}
}

func (r *run) note(format string, args ...any) {
	r.res.Notes = append(r.res.Notes, fmt.Sprintf(format, args...))
}

func inspectTarget(ctx context.Context, eng Engine, target string) (container.InspectResponse, error) {
	if target == "" {
		return container.InspectResponse{}, classify(ErrInvalid, "no container named; usage: baton deploy [flags] CONTAINER")
	}
	c, err := eng.ContainerInspect(ctx, target)
	if errdefs.IsNotFound(err) {
		return c, classify(ErrNotFound, "no container named %q on this Docker host (docker ps lists them)", target)
	}
	if err != nil {
		return c, fmt.Errorf("inspecting container %s: %w", target, err)
	}
	return c, nil
}

func stopContainer(ctx context.Context, eng Engine, id string, timeout int) error {
	opts := container.StopOptions{}
	if timeout >= 0 {
		opts.Timeout = &timeout
	}
	return eng.ContainerStop(ctx, id, opts)
}

// removeContainer removes a container and returns once it is gone. A baton
// killed in the middle of a remove leaves the engine finishing it: the next
// run's remove is refused with "removal ... already in progress" (a 409),
// and the container is gone a moment later. That is the removal we asked
// for, so wait for it (the engine's destroy event) instead of failing.
func removeContainer(ctx context.Context, eng Engine, id string, opts container.RemoveOptions) error {
	err := eng.ContainerRemove(ctx, id, opts)
	if err == nil || errdefs.IsNotFound(err) {
		return nil
	}
	if !removalInProgress(err) {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, removalWait)
	defer cancel()
	msgs, errs := eng.Events(wctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("container", id),
		filters.Arg("event", string(events.ActionDestroy)),
	)})
	// A second look: the removal may have ended before the subscription.
	// The slow re-look covers an events stream that fails, and a removal
	// that failed in the engine (the container stays, "dead", with no
	// destroy event): then remove it again and say how that went.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		c, ierr := eng.ContainerInspect(wctx, id)
		switch {
		case errdefs.IsNotFound(ierr):
			return nil
		case ierr == nil && c.State != nil && c.State.Status != container.StateRemoving:
			if err = eng.ContainerRemove(wctx, id, opts); err == nil || errdefs.IsNotFound(err) {
				return nil
			} else if !removalInProgress(err) {
				return err
			}
		}
		select {
		case m := <-msgs:
			if m.Action == events.ActionDestroy && strings.HasPrefix(m.Actor.ID, id) {
				return nil
			}
		case <-errs:
			errs = nil // keep re-looking on the ticker
		case <-tick.C:
		case <-wctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for the removal of container %s: %w", shortID(id), ctx.Err())
			}
			return fmt.Errorf("container %s was still being removed after %s: %w", shortID(id), removalWait, err)
		}
	}
}

// removalWait bounds the wait for an engine's removal already under way.
const removalWait = 2 * time.Minute

// removalInProgress reports the engine's refusal to remove a container that
// is being removed (moby's daemon/delete.go: a Conflict whose message says so).
func removalInProgress(err error) bool {
	return errdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress")
}

func newDeployID() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("%06x", time.Now().UnixNano()&0xffffff)
	}
	return hex.EncodeToString(b[:])
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func stateWord(s *container.State) string {
	switch {
	case s == nil:
		return "in an unknown state"
	case s.Paused:
		return "paused"
	case s.Restarting:
		return "restarting (crash-looping?)"
	case s.Status != "":
		return s.Status
	}
	return "not running"
}

func orUnknown(s string) string {
	if s == "" {
		return "its current image"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "defaults"
	}
	return s
}
