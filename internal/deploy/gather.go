package deploy

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/baton-sh/baton/dockerctl"
)

// gather collects the facts a deploy of old is decided on. A deploy pulls
// the new image first (so it compares what it would run); a dry run only
// looks, pulls nothing, and lists the leftovers a deploy would converge.
// Neither changes anything else: the decision comes before any change.
func (r *run) gather(ctx context.Context, old container.InspectResponse) (*Facts, error) {
	req := r.req
	f := &Facts{
		Service: r.svc, Old: old,
		ImageID: req.ImageID, Pull: req.Pull, Force: req.Force, Changed: req.Changed, DryRun: req.DryRun,
		BatonNet: dockerctl.ServiceNetwork(r.svc.Key),
		Remote:   r.d.Remote, NginxHere: r.d.NginxHere,
	}
	if err := checkContainer(old, r.svc.Name); err != nil {
		return nil, err
	}
	if err := r.resolveSettings(ctx, f); err != nil {
		return nil, err
	}
	if err := checkPortNeeded(f.Settings, old, r.svc.Name); err != nil {
		return nil, err
	}
	if err := checkRemoteFacts(f); err != nil {
		return nil, err
	}
	var err error
	if f.Ref, err = imageRef(old, req, r.svc.Name); err != nil {
		return nil, err
	}
	r.res.Traffic = string(f.Settings.TrafficMode())
	r.res.OldID = old.ID
	r.res.OldImage = old.Config.Image
	r.res.OldImageID = old.Image
	r.res.NewImage = f.Ref

	if f.DryRun {
		if l, err := r.d.leftovers(ctx, r.svc); err == nil {
			for _, c := range l {
				f.Leftovers = append(f.Leftovers, strings.TrimPrefix(c.Names[0], "/")+" ("+c.State+")")
			}
		}
		if err := r.lookAtImage(ctx, f); err != nil {
			return nil, err
		}
	} else {
		r.enter(PhasePull)
		if err := r.pull(ctx, f); err != nil {
			return nil, err
		}
	}
	if len(verdict(f)) == 0 {
		return f, nil // up to date: no configuration to build
	}
	return f, r.buildSpec(ctx, f)
}

// pull makes sure the new image is on the host, as the pull policy says,
// and records it in f.
func (r *run) pull(ctx context.Context, f *Facts) error {
	fail := func(err error) error { return &PhaseError{Phase: PhasePull, OldServing: true, Err: err} }
	if f.ImageID != "" {
		img, err := r.d.Engine.ImageInspect(ctx, f.ImageID)
		if err != nil {
			return fail(fmt.Errorf("image %s (%s) is no longer on this host: %w", f.Ref, shortID(f.ImageID), err))
		}
		f.NewImage, f.NewImageKnown = img, true
		r.res.NewImageID = img.ID
		return nil
	}
	have, err := r.d.Engine.ImageInspect(ctx, f.Ref)
	present := err == nil
	if err != nil && !errdefs.IsNotFound(err) {
		return fail(fmt.Errorf("image %s: %w", f.Ref, err))
	}
	switch {
	case f.Pull == PullNever && !present:
		return fail(fmt.Errorf("image %s is not on this host and --pull never forbids pulling it", f.Ref))
	case f.Pull == PullAlways || !present:
		r.event(PhasePull, f.Ref, "pulling %s", f.Ref)
		if err := r.d.Engine.PullImage(ctx, f.Ref, r.req.PullProgress); err != nil {
			return fail(err)
		}
		if have, err = r.d.Engine.ImageInspect(ctx, f.Ref); err != nil {
			return fail(fmt.Errorf("image %s after pulling: %w", f.Ref, err))
		}
	}
	if r.req.expectImageID != "" && have.ID != r.req.expectImageID {
		return fail(fmt.Errorf("the previous image %s is gone from this host and %s now names another image (%s); deploy a specific tag instead", shortID(r.req.expectImageID), f.Ref, shortID(have.ID)))
	}
	f.NewImage, f.NewImageKnown = have, true
	r.res.NewImageID = have.ID
	return nil
}

// lookAtImage is the dry run's pull: the new image as the host has it now,
// if it does.
func (r *run) lookAtImage(ctx context.Context, f *Facts) error {
	ref := f.Ref
	if f.ImageID != "" {
		ref = f.ImageID
	}
	img, err := r.d.Engine.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		f.NewImage, f.NewImageKnown = img, true
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return nil
}

// buildSpec builds the new container's configuration: the caller's Spec (a
// compose file's), else a clone of the old container on the new image. A dry
// run whose new image is not on the host plans with the old image's
// defaults (the plan says the differences are unknown).
func (r *run) buildSpec(ctx context.Context, f *Facts) error {
	oldImg, err := r.d.Engine.ImageInspect(ctx, f.Old.Image)
	if err != nil {
		if !f.DryRun {
			return &PhaseError{Phase: PhaseCreate, OldServing: true, Err: fmt.Errorf("image %s of container %s: %w", shortID(f.Old.Image), r.svc.Name, err)}
		}
		oldImg = image.InspectResponse{Config: &dockerspec.DockerOCIImageConfig{}}
	}
	f.OldImage = oldImg
	newImg := f.NewImage
	if !f.NewImageKnown {
		newImg = oldImg
	}
	configRef := f.Ref
	if f.ImageID != "" && configRef == "" {
		configRef = f.ImageID
	}
	var spec *dockerctl.CloneSpec
	var note string
	if specFn := r.specFunc(ctx, f, configRef); specFn != nil {
		spec, note, err = specFn(ctx, f.Old, oldImg, newImg, configRef)
	} else {
		spec, err = dockerctl.CloneConfig(f.Old, oldImg, newImg, configRef)
	}
	if err != nil {
		return specError(err, PhaseCreate, r.svc.Name)
	}
	if note != "" && !f.DryRun {
		r.event(PhaseCreate, "", "%s", note)
	}
	f.Spec, f.SpecNote = spec, note
	if !f.Remote {
		// On a remote engine the compose files are on that host.
		injected, err := composeInjected(f.OwnLabels)
		if err != nil {
			r.warn("cannot tell whether compose copied configs or secrets into %s (content: or environment: sources, which its replacement would not have): %v", r.svc.Name, err)
		}
		f.ComposeInjected = injected
	}
	return nil
}

// specFunc is the request's Spec, else the Deployer's SpecFor's, which
// sees only the operator's labels (never the image's).
func (r *run) specFunc(ctx context.Context, f *Facts, ref string) SpecFunc {
	if r.req.Spec != nil || r.d.SpecFor == nil {
		return r.req.Spec
	}
	return r.d.SpecFor(ctx, withOwnLabels(f.Old, f.OwnLabels), ref, r.req.DryRun, func(msg string) { r.event(r.phase, "", "%s", msg) })
}

// checkContainer refuses a container that is not serving or whose setup a
// second copy cannot share.
func checkContainer(old container.InspectResponse, name string) error {
	if old.State == nil || !old.State.Running || old.State.Paused || old.State.Restarting {
		return classify(ErrNotRunning, "container %s is %s, so nothing is serving that baton could replace without downtime; start it first (docker start %s)", name, stateWord(old.State), name)
	}
	if mode := old.HostConfig.NetworkMode; mode.IsHost() || mode.IsContainer() {
		return classify(ErrUnsupported, "container %s uses network mode %s: a second copy would share its ports, so it cannot be replaced without downtime (compose: network_mode host or service:X)", name, mode)
	}
	if err := checkOldStateful(old); err != nil {
		return fmt.Errorf("container %s: %w", name, err)
	}
	return nil
}
