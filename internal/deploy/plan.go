package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/baton-sh/baton/dockerctl"
)

// Plan is what a deploy would do, for --dry-run.
type Plan struct {
	Service      string `json:"service"`
	Container    string `json:"container"`
	CurrentImage string `json:"current_image"`
	CurrentID    string `json:"current_image_id"`
	NewImage     string `json:"new_image"`
	NewImageID   string `json:"new_image_id,omitempty"`
	Pull         string `json:"pull"`
	UpToDate     bool   `json:"up_to_date"`
	Traffic      string `json:"traffic"`
	Settings     string `json:"settings"`
	// Follows says where the new configuration comes from when the caller
	// builds it (compose: the running container or the changed file).
	Follows   string                `json:"follows,omitempty"`
	Isolated  bool                  `json:"isolated"`
	Exclusive []string              `json:"exclusive,omitempty"`
	Steps     []string              `json:"steps"`
	Changes   []dockerctl.FieldDiff `json:"changes,omitempty"`
	// ChangesUnknown: the new image is not on the host, so how its
	// defaults change the configuration is unknown until it is pulled.
	ChangesUnknown bool     `json:"changes_unknown,omitempty"`
	Leftovers      []string `json:"leftovers,omitempty"`
	// IgnoredLabels are the image's own baton.*/compose labels, which
	// are never settings.
	IgnoredLabels []string `json:"ignored_labels,omitempty"`
}

// dryRun works out the plan without changing anything: no lock, no pull, no
// converging of leftovers (they are listed instead).
func (r *run) dryRun(ctx context.Context, old container.InspectResponse) error {
	r.old = old
	if err := r.resolve(ctx); err != nil {
		return err
	}
	p := &Plan{
		Service: r.svc.Key, Container: r.svc.Name,
		CurrentImage: old.Config.Image, CurrentID: old.Image,
		NewImage: r.newRef, Traffic: describeTraffic(r.settings), Settings: orNone(r.settings.String()),
		IgnoredLabels: r.prov.ignored,
	}
	r.res.Plan = p
	r.res.Outcome = OutcomeDryRun
	if l, err := r.d.leftovers(ctx, r.svc); err == nil {
		for _, c := range l {
			p.Leftovers = append(p.Leftovers, strings.TrimPrefix(c.Names[0], "/")+" ("+c.State+")")
		}
	}
	img, err := r.d.Engine.ImageInspect(ctx, r.newRef)
	switch {
	case err == nil:
		p.NewImageID = img.ID
		p.Pull = fmt.Sprintf("%s is on this host as %s", r.newRef, shortID(img.ID))
		if r.req.Pull == PullAlways {
			p.Pull += fmt.Sprintf("; would pull it again (--pull %s) and compare", r.req.Pull)
		}
	case errdefs.IsNotFound(err):
		if r.req.Pull == PullNever {
			p.Pull = fmt.Sprintf("%s is not on this host and --pull never forbids pulling: the deploy would fail", r.newRef)
		} else {
			p.Pull = fmt.Sprintf("would pull %s (not on this host yet; the configuration changes below assume its defaults are unknown)", r.newRef)
		}
	default:
		return fmt.Errorf("image %s: %w", r.newRef, err)
	}
	if err == nil && img.ID == old.Image && !r.req.Force && r.req.Pull != PullAlways && r.req.Changed == "" {
		p.UpToDate = true
		p.Steps = []string{fmt.Sprintf("nothing: %s already runs %s", r.svc.Name, shortID(img.ID))}
		return nil
	}
	newImg := img
	imageKnown := err == nil
	if !imageKnown {
		// Its defaults are unknown until it is pulled; plan with the old
		// image's, and say the differences are unknown.
		newImg = r.oldImgOrEmpty(ctx)
	}
	oldImg := r.oldImgOrEmpty(ctx)
	var spec *dockerctl.CloneSpec
	var cerr error
	if specFn := r.specFunc(ctx, r.newRef); specFn != nil {
		spec, p.Follows, cerr = specFn(ctx, old, oldImg, newImg, r.newRef)
	} else {
		spec, cerr = dockerctl.CloneConfig(old, oldImg, newImg, r.newRef)
	}
	if cerr == nil {
		cerr = checkStateful(spec, r.settings)
	}
	switch {
	case cerr == nil:
	case errors.Is(cerr, ErrUnsupported), errors.Is(cerr, ErrInvalid):
		return cerr
	case errors.Is(cerr, dockerctl.ErrUnsupported):
		return classify(ErrUnsupported, "%v", cerr)
	default:
		return fmt.Errorf("container %s: %w", r.svc.Name, cerr)
	}
	if r.req.Changed != "" && imageKnown && img.ID == old.Image {
		p.Steps = append(p.Steps, "redeploy although the image is unchanged: "+r.req.Changed)
	}
	if imageKnown {
		p.Changes = spec.Diff
	} else {
		p.ChangesUnknown = true
	}
	p.Exclusive = spec.Exclusive
	nets := planNetworks(spec, dockerctl.ServiceNetwork(r.svc.Key), r.svc.Name)
	p.Isolated = nets.Isolated
	newName := r.svc.Name + "-baton-<id>"
	p.Steps = append(p.Steps, "create "+newName+" from "+r.newRef)
	if nets.Isolated {
		step := fmt.Sprintf("warm it up on %s, its service's internal network (it publishes %s, which %s holds)", dockerctl.ServiceNetwork(r.svc.Key), strings.Join(spec.Exclusive, ", "), r.svc.Name)
		var copies []string
		for _, a := range mirrorsFor(nets) {
			copies = append(copies, a.Name)
		}
		if len(copies) > 0 {
			step += " and on internal copies of " + strings.Join(copies, ", ") + " (made once, kept while those networks exist), so it reaches its peers by name"
		}
		p.Steps = append(p.Steps, step)
	} else if nets.NetworkMode != "none" {
		p.Steps = append(p.Steps, "warm it up on its networks ("+attachmentNames(nets)+") without published traffic")
	}
	p.Steps = append(p.Steps, "wait until healthy (up to "+r.settings.HealthTimeout.String()+")")
	switch r.settings.TrafficMode() {
	case "relay":
		p.Steps = append(p.Steps, "switch baton's relay to it, then wait for requests in flight on "+r.svc.Name+" (up to "+r.settings.Drain.String()+")")
	case "nginx":
		p.Steps = append(p.Steps, "rewrite "+r.settings.NginxUpstream+" to it and reload nginx, then wait for requests in flight on "+r.svc.Name+" (up to "+r.settings.Drain.String()+")")
	}
	p.Steps = append(p.Steps, "stop "+r.svc.Name+" gracefully (point of no return)")
	if len(nets.AtHandover) > 0 {
		p.Steps = append(p.Steps, "connect the new container to "+handoverNames(nets)+" (it takes over the published ports)")
	}
	p.Steps = append(p.Steps, "remove "+r.svc.Name+" (volumes kept) and rename "+newName+" to "+r.svc.Name)
	return nil
}

func (r *run) oldImgOrEmpty(ctx context.Context) image.InspectResponse {
	img, err := r.d.Engine.ImageInspect(ctx, r.old.Image)
	if err != nil {
		return image.InspectResponse{Config: &dockerspec.DockerOCIImageConfig{}}
	}
	return img
}

func describeTraffic(s Settings) string {
	switch s.TrafficMode() {
	case "relay":
		return "baton relay behind nginx (" + s.NginxUpstream + ")"
	case "nginx":
		return "nginx upstream file " + s.NginxUpstream + " with reload"
	}
	return "none: the published port is handed over when the old container stops"
}

func attachmentNames(n networkPlan) string {
	var names []string
	for name := range n.AtCreate {
		names = append(names, name)
	}
	for _, a := range n.BeforeStart {
		names = append(names, a.Name)
	}
	return strings.Join(names, ", ")
}

func handoverNames(n networkPlan) string {
	var names []string
	for _, a := range n.AtHandover {
		names = append(names, a.Name)
	}
	return strings.Join(names, ", ")
}
