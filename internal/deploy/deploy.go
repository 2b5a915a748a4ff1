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
package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"

	"github.com/baton-sh/baton/dockerctl"
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
}

// specFunc is the request's Spec, else the Deployer's SpecFor's.
func (r *run) specFunc(ctx context.Context, ref string) SpecFunc {
	if r.req.Spec != nil || r.d.SpecFor == nil {
		return r.req.Spec
	}
	return r.d.SpecFor(ctx, withOwnLabels(r.old, r.prov.own), ref, r.req.DryRun, func(msg string) { r.event(r.phase, "", "%s", msg) })
}

// run is the state of one deploy.
type run struct {
	d          *Deployer
	req        Request
	res        *Result
	svc        Service
	settings   Settings
	traffic    Traffic
	old        container.InspectResponse
	oldImg     image.InspectResponse
	newImg     image.InspectResponse
	newRef     string
	spec       *dockerctl.CloneSpec
	nets       networkPlan
	batonNet   string
	rec        Record
	newEP      Endpoint
	oldEP      Endpoint
	phase      Phase
	phaseT0    time.Time
	switched   bool
	rolledBack bool // rollback already explained what keeps serving
	prov       provenance
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
	r.svc = ServiceOf(old)
	r.res.Service = r.svc.Key
	r.res.Container = r.svc.Name

	if r.req.DryRun {
		return r.dryRun(ctx, old)
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
	r.d.pruneMirrors(ctx, r.event)
	// Converging may have finished an interrupted deploy: look again.
	if r.old, err = inspectTarget(ctx, r.d.Engine, r.svc.Name); err != nil {
		return err
	}
	if err := r.resolve(ctx); err != nil {
		return err
	}
	if err := r.pull(ctx); err != nil {
		return err
	}
	if upToDate, err := r.checkUpToDate(ctx); err != nil || upToDate {
		return err
	}
	if err := r.prepare(ctx); err != nil {
		return err
	}
	if err := r.beforeNoReturn(ctx); err != nil {
		return r.rollback(ctx, err)
	}
	// The point of no return: from here on the deploy completes even if the
	// caller cancels, so nothing is left half-done.
	return r.afterNoReturn(context.WithoutCancel(ctx))
}

// resolve checks the old container and works out settings, traffic and the
// image to deploy. It changes nothing.
func (r *run) resolve(ctx context.Context) error {
	old := r.old
	if !old.State.Running || old.State.Paused || old.State.Restarting {
		return classify(ErrNotRunning, "container %s is %s, so nothing is serving that baton could replace without downtime; start it first (docker start %s)", r.svc.Name, stateWord(old.State), r.svc.Name)
	}
	if mode := old.HostConfig.NetworkMode; mode.IsHost() || mode.IsContainer() {
		return classify(ErrUnsupported, "container %s uses network mode %s: a second copy would share its ports, so it cannot be replaced without downtime (compose: network_mode host or service:X)", r.svc.Name, mode)
	}
	if err := checkOldStateful(old); err != nil {
		return fmt.Errorf("container %s: %w", r.svc.Name, err)
	}
	if err := r.resolveSettings(ctx); err != nil {
		return err
	}
	if r.settings.Port == 0 {
		r.settings.Port = derivePort(old)
	}
	if err := r.checkPortNeeded(); err != nil {
		return err
	}
	r.res.Traffic = r.settings.TrafficMode()

	switch {
	case r.req.ImageID != "":
		r.newRef = r.req.Image
	case r.req.Image != "":
		named, err := reference.ParseNormalizedNamed(r.req.Image)
		if err != nil {
			return classify(ErrInvalid, "--image %q is not a valid image reference: %v", r.req.Image, err)
		}
		r.newRef = reference.FamiliarString(reference.TagNameOnly(named))
	default:
		if strings.HasPrefix(old.Config.Image, "sha256:") {
			return classify(ErrInvalid, "container %s was started from image ID %s, not a name baton could pull again; pass --image", r.svc.Name, shortID(old.Config.Image))
		}
		r.newRef = old.Config.Image
	}
	r.res.OldID = old.ID
	r.res.OldImage = old.Config.Image
	r.res.OldImageID = old.Image
	r.res.NewImage = r.newRef
	return nil
}

// checkPortNeeded fails early when a probe, the relay or nginx needs the
// app's port and the container does not say which it is.
func (r *run) checkPortNeeded() error {
	if r.settings.Port != 0 {
		return nil
	}
	var needs []string
	if r.settings.HTTPProbe != "" {
		needs = append(needs, "--http-probe")
	}
	if r.settings.TCPProbe {
		needs = append(needs, "--tcp-probe")
	}
	if r.settings.NginxUpstream != "" {
		needs = append(needs, "--nginx-upstream")
	}
	if len(needs) == 0 {
		return nil
	}
	return classify(ErrInvalid, "%s needs the app's port, and container %s exposes %s; pass --port",
		strings.Join(needs, " and "), r.svc.Name, describeExposed(r.old))
}

func (r *run) pull(ctx context.Context) error {
	r.enter(PhasePull)
	if r.req.ImageID != "" {
		img, err := r.d.Engine.ImageInspect(ctx, r.req.ImageID)
		if err != nil {
			return &PhaseError{Phase: PhasePull, OldServing: true, Err: fmt.Errorf("image %s (%s) is no longer on this host: %w", r.req.Image, shortID(r.req.ImageID), err)}
		}
		r.newImg = img
		r.res.NewImageID = img.ID
		return nil
	}
	have, err := r.d.Engine.ImageInspect(ctx, r.newRef)
	present := err == nil
	if err != nil && !errdefs.IsNotFound(err) {
		return &PhaseError{Phase: PhasePull, OldServing: true, Err: fmt.Errorf("image %s: %w", r.newRef, err)}
	}
	switch {
	case r.req.Pull == PullNever && !present:
		return &PhaseError{Phase: PhasePull, OldServing: true, Err: fmt.Errorf("image %s is not on this host and --pull never forbids pulling it", r.newRef)}
	case r.req.Pull == PullAlways || !present:
		r.event(PhasePull, r.newRef, "pulling %s", r.newRef)
		if err := r.d.Engine.PullImage(ctx, r.newRef, r.req.PullProgress); err != nil {
			return &PhaseError{Phase: PhasePull, OldServing: true, Err: err}
		}
		if have, err = r.d.Engine.ImageInspect(ctx, r.newRef); err != nil {
			return &PhaseError{Phase: PhasePull, OldServing: true, Err: fmt.Errorf("image %s after pulling: %w", r.newRef, err)}
		}
	}
	if r.req.expectImageID != "" && have.ID != r.req.expectImageID {
		return &PhaseError{Phase: PhasePull, OldServing: true, Err: fmt.Errorf("the previous image %s is gone from this host and %s now names another image (%s); deploy a specific tag instead", shortID(r.req.expectImageID), r.newRef, shortID(have.ID))}
	}
	r.newImg = have
	r.res.NewImageID = have.ID
	return nil
}

// checkUpToDate ends the deploy early when neither the image nor the
// recorded settings changed. It still makes sure traffic reaches the serving
// container, which also repairs the relay or upstream file after a reboot.
func (r *run) checkUpToDate(ctx context.Context) (bool, error) {
	sameImage := r.newImg.ID == r.old.Image
	recordedRes, err := r.d.resolveSettingsOutvoting(ctx, r.svc, r.old, nil, r.req.Flags)
	if err != nil {
		return false, err
	}
	recorded := recordedRes.Settings
	if recorded.Port == 0 {
		recorded.Port = derivePort(r.old)
	}
	sameSettings := recorded.String() == r.settings.String()
	if !sameImage || r.req.Force {
		return false, nil
	}
	if r.req.Changed != "" {
		r.event(PhasePull, "", "image unchanged but %s; redeploying", r.req.Changed)
		return false, nil
	}
	if !sameSettings {
		r.event(PhasePull, "", "image unchanged but settings changed (%s -> %s); redeploying so the new settings are recorded on the container", orNone(recorded.String()), orNone(r.settings.String()))
		return false, nil
	}
	if err := r.ensureTraffic(ctx); err != nil {
		return true, &PhaseError{Phase: PhaseSwitch, OldServing: true, Err: err}
	}
	r.res.Outcome = OutcomeUpToDate
	r.res.NewID = r.old.ID
	r.recordServing()
	r.note("%s already runs %s (%s); nothing to do (--force redeploys anyway)", r.svc.Name, r.newRef, shortID(r.newImg.ID))
	return true, nil
}

// prepare builds the new container's configuration and readies traffic. The
// only host change it may make is first-time traffic set-up (relay, upstream
// file) pointing at the old container, which keeps serving.
func (r *run) prepare(ctx context.Context) error {
	var err error
	r.oldImg, err = r.d.Engine.ImageInspect(ctx, r.old.Image)
	if err != nil {
		return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: fmt.Errorf("image %s of container %s: %w", shortID(r.old.Image), r.svc.Name, err)}
	}
	configRef := r.newRef
	if r.req.ImageID != "" && configRef == "" {
		configRef = r.req.ImageID
	}
	if specFn := r.specFunc(ctx, configRef); specFn != nil {
		var note string
		r.spec, note, err = specFn(ctx, r.old, r.oldImg, r.newImg, configRef)
		if note != "" && err == nil {
			r.event(PhaseCreate, "", "%s", note)
		}
	} else {
		r.spec, err = dockerctl.CloneConfig(r.old, r.oldImg, r.newImg, configRef)
	}
	if err == nil {
		err = checkStateful(r.spec, r.settings)
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrUnsupported), errors.Is(err, ErrInvalid):
			return err
		case errors.Is(err, dockerctl.ErrUnsupported):
			return classify(ErrUnsupported, "%v", err)
		}
		return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: err}
	}
	if r.req.ImageID != "" {
		// Pin the exact image: the tag may point elsewhere by now.
		r.spec.Config.Image = r.req.ImageID
	}
	if r.spec.HostConfig.NetworkMode != "none" {
		if r.batonNet, err = r.d.Engine.EnsureServiceNetwork(ctx, r.svc.Key); err != nil {
			return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: err}
		}
	} else if r.settings.TrafficMode() != "none" || r.settings.HTTPProbe != "" || r.settings.TCPProbe {
		return classify(ErrInvalid, "container %s has network mode none, so nothing can reach it: no probes, relay or nginx", r.svc.Name)
	}
	r.nets = planNetworks(r.spec, r.batonNet, r.svc.Name)
	if err := r.ensureTraffic(ctx); err != nil {
		return &PhaseError{Phase: PhaseSwitch, OldServing: true, Err: err}
	}
	r.recordServing()
	return nil
}

// ensureTraffic attaches the serving container to its service's network (so the
// relay, nginx and probes reach it) and has the traffic mechanism point at it.
func (r *run) ensureTraffic(ctx context.Context) error {
	t, err := r.d.Traffic(ctx, r.svc, r.settings)
	if err != nil {
		return err
	}
	r.traffic = t
	if t.Mode() == "none" {
		return nil
	}
	ep, err := r.endpoint(ctx, r.old.ID, true)
	if err != nil {
		return err
	}
	r.oldEP = ep
	return t.Ensure(ctx, ep)
}

// beforeNoReturn runs create to drain. Any error here is rolled back.
func (r *run) beforeNoReturn(ctx context.Context) error {
	if err := r.create(ctx); err != nil {
		return err
	}
	if err := r.warm(ctx); err != nil {
		return err
	}
	if err := r.switchTraffic(ctx); err != nil {
		return err
	}
	return r.drain(ctx)
}

func (r *run) create(ctx context.Context) error {
	r.enter(PhaseCreate)
	deployID := newDeployID()
	r.res.DeployID = deployID
	newName := r.svc.Name + "-baton-" + deployID
	cfg := r.spec.Config
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	maps.Copy(cfg.Labels, r.settings.Labels())
	cfg.Labels[LabelManaged] = "true"
	cfg.Labels[LabelService] = r.svc.Key
	cfg.Labels[LabelRole] = RoleApp
	cfg.Labels[LabelDeployID] = deployID
	cfg.Labels[LabelReplaces] = r.old.ID
	cfg.Labels[LabelPreviousImage] = r.old.Config.Image
	cfg.Labels[LabelPreviousImageID] = r.old.Image
	host := r.spec.HostConfig
	host.NetworkMode = container.NetworkMode(r.nets.NetworkMode)
	r.portBindings = host.PortBindings

	r.rec = Record{
		DeployID: deployID, Service: r.svc, Phase: PhaseCreate, Settings: r.settings, Flags: r.prov.sticky, Trigger: r.req.Trigger,
		OldID: r.old.ID, OldName: r.svc.Name, NewName: newName,
		OldImage: r.old.Config.Image, NewImage: r.newRef, StartedAt: r.res.StartedAt,
		Handover: r.nets.AtHandover, Isolated: r.nets.Isolated,
	}
	if err := r.saveRecord(PhaseCreate); err != nil {
		return err
	}
	r.event(PhaseCreate, newName, "creating %s from %s", newName, r.newRef)
	created, err := r.d.Engine.ContainerCreate(ctx, cfg, host, &network.NetworkingConfig{EndpointsConfig: r.nets.AtCreate}, nil, newName)
	if err != nil {
		return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: fmt.Errorf("creating container %s: %w", newName, err)}
	}
	r.rec.NewID = created.ID
	r.res.NewID = created.ID
	if err := r.saveRecord(PhaseCreate); err != nil {
		return err
	}
	for _, a := range r.nets.BeforeStart {
		if err := r.d.Engine.NetworkConnect(ctx, a.Name, created.ID, a.Endpoint); err != nil {
			return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: fmt.Errorf("connecting %s to network %s: %w", newName, a.Name, err)}
		}
	}
	if err := r.joinWarmNetworks(ctx); err != nil {
		return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: err}
	}
	return nil
}

// warm starts the new container and waits until it is healthy.
func (r *run) warm(ctx context.Context) error {
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
	newCtr, err := r.d.Engine.ContainerInspect(ctx, r.rec.NewID)
	if err != nil {
		return &PhaseError{Phase: PhaseWarm, OldServing: true, Err: err}
	}
	spec, how := r.healthSpec(newCtr, ep)
	r.event(PhaseWarm, r.rec.NewName, "waiting for %s to be healthy (%s, up to %s)", r.rec.NewName, how, r.settings.HealthTimeout)
	hctx, cancel := context.WithTimeout(ctx, r.settings.HealthTimeout)
	defer cancel()
	if err := healthcheck.Wait(hctx, r.d.Engine, spec); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return &PhaseError{Phase: PhaseWarm, OldServing: true, Err: fmt.Errorf("deploy cancelled while %s was warming up", r.rec.NewName)}
		}
		return &PhaseError{Phase: PhaseWarm, OldServing: true, Err: fmt.Errorf("new container %s: %w", r.rec.NewName, err)}
	}
	r.enter(PhaseHealthy)
	if n := r.settings.WarmupRequests; n > 0 && r.settings.Port != 0 {
		path := r.settings.HTTPProbe
		if path == "" {
			path = "/"
		}
		url := "http://" + ep.Addr() + path
		r.event(PhaseHealthy, r.rec.NewName, "sending %d warm-up requests to %s", n, url)
		if err := healthcheck.WarmUp(hctx, url, n); err != nil {
			return &PhaseError{Phase: PhaseHealthy, OldServing: true, Err: fmt.Errorf("warm-up requests to %s: %w", r.rec.NewName, err)}
		}
	}
	r.event(PhaseHealthy, r.rec.NewName, "%s is healthy", r.rec.NewName)
	return nil
}

// healthSpec decides what "healthy" means for the new container: its Docker
// HEALTHCHECK if it has one, the probes the user asked for, and when there is
// neither, a TCP connect to the app's port.
func (r *run) healthSpec(c container.InspectResponse, ep Endpoint) (healthcheck.Spec, string) {
	spec := healthcheck.Spec{Container: c.ID, DockerHealth: healthcheck.HasDockerHealthcheck(c.Config)}
	var how []string
	if spec.DockerHealth {
		how = append(how, "Docker HEALTHCHECK")
	}
	if r.settings.HTTPProbe != "" {
		spec.Probes = append(spec.Probes, healthcheck.HTTP(ep.Addr(), r.settings.HTTPProbe))
		how = append(how, "GET "+r.settings.HTTPProbe)
	}
	if r.settings.TCPProbe {
		spec.Probes = append(spec.Probes, healthcheck.TCP(ep.Addr()))
		how = append(how, "TCP connect")
	}
	if len(how) == 0 && r.settings.Port != 0 && ep.IP != "" {
		spec.Probes = append(spec.Probes, healthcheck.TCP(ep.Addr()))
		how = append(how, fmt.Sprintf("TCP connect to port %d, as the image has no HEALTHCHECK and no --http-probe was given", r.settings.Port))
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
	if r.traffic.Mode() == "none" {
		return nil
	}
	if err := r.saveRecord(PhaseSwitch); err != nil {
		return err
	}
	r.switched = true
	r.event(PhaseSwitch, r.rec.NewName, "moving traffic to %s (%s)", r.rec.NewName, r.traffic.Mode())
	if err := r.traffic.Switch(ctx, r.oldEP, r.newEP); err != nil {
		return &PhaseError{Phase: PhaseSwitch, OldServing: true, Err: err}
	}
	return nil
}

func (r *run) drain(ctx context.Context) error {
	if r.traffic.Mode() == "none" {
		return nil
	}
	r.enter(PhaseDrain)
	if err := r.saveRecord(PhaseDrain); err != nil {
		return err
	}
	r.event(PhaseDrain, r.svc.Name, "waiting for requests in flight on %s to finish (up to %s)", r.svc.Name, r.settings.Drain)
	if err := r.traffic.Drain(ctx, r.oldEP, r.settings.Drain); err != nil {
		return &PhaseError{Phase: PhaseDrain, OldServing: true, Err: err}
	}
	return nil
}

// afterNoReturn stops the old container, hands over its networks and name.
// It runs on a context that ignores cancellation.
func (r *run) afterNoReturn(ctx context.Context) error {
	r.enter(PhaseStopOld)
	if err := r.saveRecord(PhaseStopOld); err != nil {
		// Not yet past the point of no return: nothing was stopped.
		return r.rollback(ctx, err)
	}
	r.event(PhaseStopOld, r.svc.Name, "stopping %s", r.svc.Name)
	if err := stopContainer(ctx, r.d.Engine, r.old.ID, r.settings.StopTimeout); err != nil {
		// The stop failed, so the old container may still run: check before
		// deciding which way to go.
		if c, ierr := r.d.Engine.ContainerInspect(ctx, r.old.ID); ierr == nil && c.State.Running {
			return r.rollback(ctx, fmt.Errorf("stopping %s: %w", r.svc.Name, err))
		}
	}
	return r.rollForward(ctx)
}

// rollForward completes a deploy whose old container has stopped: handover,
// finalize. Used by afterNoReturn and by recovery.
func (r *run) rollForward(ctx context.Context) error {
	r.enter(PhaseHandover)
	if err := r.saveRecord(PhaseHandover); err != nil {
		r.warn("could not record the handover phase: %v", err)
	}
	if err := r.handover(ctx); err != nil {
		return r.rescue(ctx, PhaseHandover, err)
	}
	r.enter(PhaseFinalize)
	if err := r.saveRecord(PhaseFinalize); err != nil {
		r.warn("could not record the finalize phase: %v", err)
	}
	if err := r.finalize(ctx); err != nil {
		return &PhaseError{Phase: PhaseFinalize, OldServing: false, Err: fmt.Errorf("%w (the new container serves; run baton status %s to converge)", err, r.svc.Name)}
	}
	r.res.Outcome = OutcomeDeployed
	r.res.OldServing = false
	return nil
}

func (r *run) handover(ctx context.Context) error {
	if len(r.rec.Handover) == 0 {
		return nil
	}
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
	if err := r.d.Engine.ContainerRemove(ctx, r.rec.OldID, container.RemoveOptions{}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing old container %s: %w", r.rec.OldName, err)
	}
	if err := r.d.Engine.ContainerRename(ctx, r.rec.NewID, r.rec.OldName); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", r.rec.NewName, r.rec.OldName, err)
	}
	if r.traffic != nil && r.traffic.Mode() != "none" {
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
	r.event(PhaseFinalize, r.rec.OldName, "%s now runs %s", r.rec.OldName, r.newRef)
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
		if err := r.traffic.Switch(ctx, r.newEP, r.oldEP); err != nil {
			problems = append(problems, "moving traffic back: "+err.Error())
		} else if err := r.traffic.Drain(ctx, r.newEP, r.settings.Drain); err != nil {
			problems = append(problems, "draining the new container: "+err.Error())
		}
	}
	if r.rec.NewID != "" {
		if err := r.d.Engine.ContainerRemove(ctx, r.rec.NewID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			problems = append(problems, fmt.Sprintf("removing %s: %v", r.rec.NewName, err))
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
	if err := r.d.Engine.ContainerRemove(ctx, r.rec.NewID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		r.warn("removing %s: %v", r.rec.NewName, err)
	}
	if err := r.d.State.RemoveRecord(r.svc.Key); err != nil {
		r.warn("%v", err)
	}
	return &PhaseError{Phase: phase, OldServing: false, Err: classify(ErrOldStopped, "%v; %s was started again and serves, after a short outage", cause, r.svc.Name)}
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
	return endpointOf(c, r.batonNet, r.settings.Port), nil
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
