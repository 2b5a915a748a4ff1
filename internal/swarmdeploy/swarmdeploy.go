// Package swarmdeploy deploys a Docker Swarm service the way baton deploys a
// container: a start-first rolling update gated on the tasks' health, rolled
// back when it fails, with progress per task and baton's exit codes.
//
// Swarm does the replacing itself (its updater starts a new task, waits until
// its container is healthy, takes the old task out of the service's DNS,
// waits for gossip and then stops it); baton chooses the update settings that
// make that loss-free behind a proxy (start-first, rollback on failure, a
// stop grace period covering in-flight requests), resolves and checks the
// image before anything changes, watches the update to its end and rolls
// back when it does not finish in time. Like internal/deploy it does no
// Docker I/O of its own beyond the small Engine interface it declares.
package swarmdeploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/internal/deploy"
)

// Engine is the part of the Docker Engine API a service deploy uses.
type Engine interface {
	ServiceInspectWithRaw(ctx context.Context, serviceID string, opts swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error)
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	DistributionInspect(ctx context.Context, imageRef, encodedRegistryAuth string) (registry.DistributionInspect, error)
}

// FailureAction is what Swarm does when a new task fails during the update.
type FailureAction string

const (
	FailureRollback FailureAction = swarm.UpdateFailureActionRollback
	FailurePause    FailureAction = swarm.UpdateFailureActionPause
	FailureContinue FailureAction = swarm.UpdateFailureActionContinue
)

// ParseFailureAction validates an --update-failure-action value.
func ParseFailureAction(s string) (FailureAction, error) {
	switch a := FailureAction(s); a {
	case FailureRollback, FailurePause, FailureContinue:
		return a, nil
	}
	return "", kinded(deploy.ErrInvalid, "--update-failure-action %q: want rollback, pause or continue", s)
}

// Options is one service deploy.
type Options struct {
	Service string
	Image   string // "" redeploys the image the service runs, resolved again
	Pull    deploy.PullPolicy
	Force   bool
	DryRun  bool

	// Update settings; zero values take the defaults below.
	Parallelism   uint64
	Delay         time.Duration
	Monitor       time.Duration
	FailureAction FailureAction
	// StopGrace is the time an old task gets between SIGTERM and SIGKILL;
	// 0 keeps the service's own, raised to at least Drain.
	StopGrace time.Duration
	Drain     time.Duration
	// Timeout bounds the whole update; past it baton asks Swarm to roll
	// back. 0: per task batch, health timeout plus monitor, plus a minute.
	HealthTimeout time.Duration
	Timeout       time.Duration
	// Probe turns baton's probe flags into the task template's
	// HEALTHCHECK; zero keeps the service's (or its image's).
	Probe Probe
	// Inherit fills the update settings not given from those the service
	// has (a watch or webhook deploy keeps what the operator's last
	// baton deploy chose).
	Inherit bool
	// Stack, when set, deploys the service from its stack file (Service
	// is then the Swarm service's name, <stack>_<service>).
	Stack *Stack

	// RegistryAuth returns the X-Registry-Auth value for an image, sent
	// with the registry lookup and the update so that every node can pull
	// (docker service update --with-registry-auth); nil sends none.
	RegistryAuth func(ref string) (string, error)
	Trigger, Who string
}

// Defaults for a service update. Monitor is how long Swarm keeps watching a
// new task after it turned running before it counts the update as done;
// a task failing in it triggers the failure action.
const (
	DefaultParallelism = 1
	DefaultMonitor     = 5 * time.Second
	DefaultDrain       = 30 * time.Second
	DefaultHealth      = 2 * time.Minute
)

// Deployer runs service deploys.
type Deployer struct {
	Engine Engine
	Report deploy.Reporter
	Log    *slog.Logger
	// IPVSPresent reports whether the kernel can carry routing-mesh
	// traffic; nil reads /proc/net/ip_vs.
	IPVSPresent func() bool
	// Poll is how often the update's status is read (Swarm has no event
	// for a task's progress through an update); default 250ms.
	Poll time.Duration
	// Locks, when set, keeps two deploys or rollbacks of one service from
	// running at once (a CLI deploy beside a watch or webhook one): Swarm
	// would refuse the second update as out of sequence, converge would
	// report the other's update as recovered, and a stack deploy (no
	// version check) would overwrite an update in progress.
	Locks Locker

	start time.Time // of the deploy, for the events' elapsed time
}

// Locker is the state directory's per-key lock (state.Dir).
type Locker interface {
	Lock(ctx context.Context, key string, onWait func()) (unlock func(), err error)
}

// lock takes the service's lock and reads the service again: whoever held
// the lock may have changed it.
func (d *Deployer) lock(ctx context.Context, svc swarm.Service) (swarm.Service, func(), error) {
	if d.Locks == nil {
		return svc, func() {}, nil
	}
	name := svc.Spec.Name
	unlock, err := d.Locks.Lock(ctx, "swarm-"+name, func() {
		d.event(deploy.PhaseResolve, fmt.Sprintf("another deploy of service %s is running; waiting for it to finish", name), false)
	})
	if err != nil {
		return svc, nil, &deploy.PhaseError{Phase: deploy.PhaseResolve, OldServing: true, Err: fmt.Errorf("service %s: %w", name, err)}
	}
	now, _, err := d.Engine.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		unlock()
		return svc, nil, fmt.Errorf("service %s: inspect: %w", name, err)
	}
	return now, unlock, nil
}

// ErrNoIPVS: the service publishes through the routing mesh, which needs
// IPVS, and this kernel has none.
var ErrNoIPVS = errors.New("no IPVS")

// FindService returns the service named name, or false if the engine has
// none (or is not a swarm manager).
func FindService(ctx context.Context, eng Engine, name string) (swarm.Service, bool, error) {
	svc, _, err := eng.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	switch {
	case err == nil:
		// Inspect also matches an ID prefix; a service deploy is by name.
		return svc, svc.Spec.Name == name || svc.ID == name, nil
	case errdefs.IsNotFound(err), errdefs.IsUnavailable(err), isNotManager(err):
		return swarm.Service{}, false, nil
	default:
		return swarm.Service{}, false, fmt.Errorf("service %s: inspect: %w", name, err)
	}
}

func isNotManager(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "not a swarm manager") || strings.Contains(msg, "swarm mode")
}

func ipvsPresent() bool {
	_, err := os.Stat("/proc/net/ip_vs")
	return err == nil
}

func (d *Deployer) event(phase deploy.Phase, msg string, warn bool) {
	if d.Report != nil {
		d.Report.Event(deploy.Event{Time: time.Now(), Phase: phase, Message: msg, Warning: warn, Elapsed: time.Since(d.start)})
	}
}

// Deploy updates the service to the new image. The Result is never nil; the
// error wraps the deploy package's sentinels or is a *deploy.PhaseError, so
// deploy.ExitCode gives the documented exit code.
func (d *Deployer) Deploy(ctx context.Context, o Options) (*deploy.Result, error) {
	res := &deploy.Result{Target: o.Service, Service: o.Service, Trigger: o.Trigger, Who: o.Who,
		Traffic: "swarm", StartedAt: time.Now(), Outcome: deploy.OutcomeFailed, OldServing: true}
	d.start = res.StartedAt
	err := d.deploy(ctx, o, res)
	res.Duration = time.Since(res.StartedAt)
	if err != nil {
		res.Outcome = deploy.OutcomeFailed
		res.Error = err.Error()
		var pe *deploy.PhaseError
		if errors.As(err, &pe) {
			res.OldServing = pe.OldServing
		}
	}
	res.ExitCode = deploy.ExitCode(err)
	return res, err
}

func (d *Deployer) deploy(ctx context.Context, o Options, res *deploy.Result) error {
	svc, found, err := FindService(ctx, d.Engine, o.Service)
	if err != nil {
		return err
	}
	if !found {
		return kinded(deploy.ErrNotFound, "no swarm service named %s on this engine", o.Service)
	}
	if svc.Spec.TaskTemplate.ContainerSpec == nil {
		return kinded(deploy.ErrUnsupported, "service %s runs no container (a plugin service)", o.Service)
	}
	if err := d.checkMesh(svc); err != nil {
		return err
	}
	if o.Stack != nil {
		if o.Probe.given() {
			return kinded(deploy.ErrInvalid, "--http-probe/--tcp-probe/--probe-cmd do not apply to service %s of stack %s: its spec comes from the stack file; give it a healthcheck: there", o.Stack.Service, o.Stack.Name)
		}
		if o.Force {
			return kinded(deploy.ErrInvalid, "--force does not apply to service %s of stack %s: a stack deploy restarts tasks only when the file changes them", o.Stack.Service, o.Stack.Name)
		}
	}
	if err := o.Probe.check(o.Service); err != nil {
		return err
	}
	if !o.DryRun {
		var unlock func()
		if svc, unlock, err = d.lock(ctx, svc); err != nil {
			return err
		}
		defer unlock()
	}
	// A baton killed mid-update left Swarm updating (or rolling back):
	// converge by letting that finish first, so this deploy starts from a
	// settled service (the UpdateStatus says where it stopped).
	if svc, err = d.converge(ctx, svc, o, res); err != nil {
		return err
	}
	cur := svc.Spec.TaskTemplate.ContainerSpec.Image
	res.OldImage = cur
	res.Container = svc.Spec.Name

	var file *stackFile
	if o.Stack != nil {
		if file, err = loadStack(ctx, o.Stack); err != nil {
			return err
		}
		if o.Image == "" {
			o.Image = file.image()
		}
	}

	d.event(deploy.PhasePull, "resolving "+orDefault(o.Image, cur), false)
	auth := ""
	if o.RegistryAuth != nil {
		if auth, err = o.RegistryAuth(orDefault(o.Image, stripDigest(cur))); err != nil {
			return kinded(deploy.ErrInvalid, "%w", err)
		}
	}
	ref, note, err := d.resolveImage(ctx, o, cur, auth)
	if err != nil {
		return &deploy.PhaseError{Phase: deploy.PhasePull, OldServing: true,
			Err: fmt.Errorf("%w; service %s keeps serving %s", err, o.Service, cur)}
	}
	if note != "" {
		res.Notes = append(res.Notes, note)
		d.event(deploy.PhasePull, note, true)
	}
	res.NewImage = ref

	spec, err := copySpec(svc.Spec)
	if err != nil {
		return err
	}
	if file != nil {
		// The stack file's grace period is the one the service gets
		// (raised to the drain time like any other).
		if spec.TaskTemplate.ContainerSpec.StopGracePeriod, err = file.grace(); err != nil {
			return err
		}
	}
	if o.Inherit {
		o = inherit(o, svc.Spec)
	}
	hc, hcChange, hcNote, err := decideHealth(svc.Spec, d.imageFacts(ctx, ref, o.Image), o.Probe, o.HealthTimeout, file != nil)
	if err != nil {
		return err
	}
	plan := decide(svc.Spec, &spec, ref, o)
	if hc != nil {
		// In the task template: it restarts the tasks, as it must for
		// Swarm to gate the new ones on it.
		spec.TaskTemplate.ContainerSpec.Healthcheck = hc
		plan.SettingsChanged = true
		plan.Changes = append(plan.Changes, hcChange)
	}
	if hcNote != "" {
		res.Notes = append(res.Notes, hcNote)
		d.event(deploy.PhaseResolve, hcNote, true)
	}
	for _, c := range plan.Changes {
		d.event(deploy.PhaseResolve, c, false)
	}
	if o.DryRun {
		res.Outcome = deploy.OutcomeDryRun
		res.Notes = append(res.Notes, plan.Changes...)
		if file != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("and whatever else the stack file sets differently for %s (docker stack deploy applies it)", o.Stack.Service))
			return nil
		}
		if !plan.ImageChanged && !plan.SettingsChanged && !o.Force {
			res.Notes = append(res.Notes, "up to date: nothing would change")
		}
		return nil
	}
	if file != nil {
		return d.deployStack(ctx, svc, spec, file, ref, cur, o, res)
	}
	if !plan.ImageChanged && !plan.SettingsChanged && !o.Force {
		res.Outcome = deploy.OutcomeUpToDate
		d.event(deploy.PhaseFinalize, fmt.Sprintf("service %s already runs %s", o.Service, ref), false)
		return nil
	}
	if o.Force {
		spec.TaskTemplate.ForceUpdate++
	}

	d.event(deploy.PhaseCreate, fmt.Sprintf("updating service %s to %s (start-first, parallelism %d, failure action %s)",
		o.Service, ref, spec.UpdateConfig.Parallelism, spec.UpdateConfig.FailureAction), false)
	upd, err := d.Engine.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{EncodedRegistryAuth: auth})
	if err != nil {
		return &deploy.PhaseError{Phase: deploy.PhaseCreate, OldServing: true,
			Err: fmt.Errorf("service %s: update: %w; it keeps serving %s", o.Service, err, cur)}
	}
	for _, w := range upd.Warnings {
		d.event(deploy.PhaseCreate, w, true)
	}
	after, _, err := d.Engine.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		return &deploy.PhaseError{Phase: deploy.PhaseHealthy, OldServing: true, Err: fmt.Errorf("service %s: inspect: %w", o.Service, err)}
	}
	return d.watch(ctx, after, ref, cur, o, res)
}

// inherit fills o's zero update settings from the service's own, when a
// start-first update config (baton's) is there.
func inherit(o Options, spec swarm.ServiceSpec) Options {
	uc := spec.UpdateConfig
	if uc == nil || uc.Order != swarm.UpdateOrderStartFirst {
		return o
	}
	if o.Parallelism == 0 {
		o.Parallelism = uc.Parallelism
	}
	if o.Delay == 0 {
		o.Delay = uc.Delay
	}
	if o.Monitor == 0 {
		o.Monitor = uc.Monitor
	}
	if o.FailureAction == "" {
		o.FailureAction = FailureAction(uc.FailureAction)
	}
	return o
}

// imageFacts inspects the image the update names on this node; a
// registry-only image is unknown, which only costs a note.
func (d *Deployer) imageFacts(ctx context.Context, refs ...string) imageFacts {
	for _, r := range refs {
		if r == "" {
			continue
		}
		if img, err := d.Engine.ImageInspect(ctx, r); err == nil {
			return factsOf(img)
		}
	}
	return imageFacts{}
}

// checkMesh refuses a service whose published ports go through the routing
// mesh on a kernel without IPVS: the ports would refuse connections, so a
// deploy could not keep anything serving.
func (d *Deployer) checkMesh(svc swarm.Service) error {
	present := d.IPVSPresent
	if present == nil {
		present = ipvsPresent
	}
	ingress := false
	if ep := svc.Spec.EndpointSpec; ep != nil {
		for _, p := range ep.Ports {
			if p.PublishMode == "" || p.PublishMode == swarm.PortConfigPublishModeIngress {
				ingress = true
			}
		}
	}
	if !ingress || present() {
		return nil
	}
	return &kindError{kinds: []error{deploy.ErrUnsupported, ErrNoIPVS}, err: fmt.Errorf("service %s publishes ports through the routing mesh, which needs IPVS, and this kernel has none (/proc/net/ip_vs missing); publish with mode=host, or use --endpoint-mode dnsrr behind an nginx resolving tasks.%s",
		svc.Spec.Name, svc.Spec.Name)}
}

// kindError is an error of the given kinds (for errors.Is) whose message
// does not repeat them.
type kindError struct {
	kinds []error
	err   error
}

// kinded is fmt.Errorf for an error of one kind.
func kinded(kind error, format string, args ...any) error {
	return &kindError{kinds: []error{kind}, err: fmt.Errorf(format, args...)}
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return append([]error{e.err}, e.kinds...) }

// resolveImage returns the reference the update names: pinned to the
// registry's digest when the registry answers (so every node runs the same
// image, as docker service update does), else the local image's tag when
// this node has it (a note says other nodes must have it too). Neither is a
// failure before anything changed.
func (d *Deployer) resolveImage(ctx context.Context, o Options, cur, auth string) (ref, note string, err error) {
	want := o.Image
	if want == "" {
		want = stripDigest(cur)
	}
	named, err := reference.ParseNormalizedNamed(want)
	if err != nil {
		return "", "", fmt.Errorf("image %q: %w", want, err)
	}
	if _, ok := named.(reference.Canonical); ok {
		return want, "", nil
	}
	named = reference.TagNameOnly(named)
	var regErr error
	if o.Pull != deploy.PullNever {
		di, err := d.Engine.DistributionInspect(ctx, named.String(), auth)
		if err == nil {
			c, cerr := reference.WithDigest(named, di.Descriptor.Digest)
			if cerr == nil {
				return reference.FamiliarString(c), "", nil
			}
			regErr = cerr
		} else {
			regErr = err
		}
	}
	if _, err := d.Engine.ImageInspect(ctx, want); err == nil {
		if regErr == nil {
			return want, "", nil
		}
		return want, fmt.Sprintf("image %s: no registry answered (%v); using this node's copy by tag, so every node that runs a task must have it", want, firstLine(regErr)), nil
	}
	if regErr != nil {
		return "", "", fmt.Errorf("image %s: not in a registry (%v) and not on this node", want, firstLine(regErr))
	}
	return "", "", fmt.Errorf("image %s: not on this node (--pull never)", want)
}

func stripDigest(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i]
	}
	return ref
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// copySpec deep-copies a service spec (it holds pointers baton changes).
func copySpec(s swarm.ServiceSpec) (swarm.ServiceSpec, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return s, fmt.Errorf("service %s: copying its spec: %w", s.Name, err)
	}
	var out swarm.ServiceSpec
	if err := json.Unmarshal(b, &out); err != nil {
		return s, fmt.Errorf("service %s: copying its spec: %w", s.Name, err)
	}
	return out, nil
}
