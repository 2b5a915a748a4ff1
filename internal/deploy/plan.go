package deploy

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"

	"github.com/baton-sh/baton/dockerctl"
)

// Plan is what a deploy does, decided once from its Facts: whether the
// service is up to date and if not why, the new container's configuration,
// how it joins its networks, how traffic moves and the ordered steps. The
// executor walks it; --dry-run prints it. The exported fields are the dry
// run's output (text and JSON).
type Plan struct {
	Service      string `json:"service"`
	Container    string `json:"container"`
	CurrentImage string `json:"current_image"`
	CurrentID    string `json:"current_image_id"`
	NewImage     string `json:"new_image"`
	NewImageID   string `json:"new_image_id,omitempty"`
	Pull         string `json:"pull"`
	UpToDate     bool   `json:"up_to_date"`
	// Reasons say why the service is not up to date.
	Reasons     []string    `json:"reasons,omitempty"`
	Traffic     string      `json:"traffic"`
	TrafficMode TrafficMode `json:"traffic_mode"`
	Settings    string      `json:"settings"`
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
	// Drift lists the old container's settings the new one cannot have,
	// accepted with --accept-drift (a plan with drift not accepted is
	// refused); Carried those it gets later than at create.
	Drift   []dockerctl.DriftField `json:"drift,omitempty"`
	Carried []string               `json:"carried,omitempty"`

	settings Settings
	ref      string // the image the new container is created from, for messages
	// config and hostConfig are the new container's, complete but for its
	// deploy ID (made when it is created).
	config     *container.Config
	hostConfig *container.HostConfig
	nets       networkPlan
	steps      []Step
}

// TrafficMode is how a service's traffic moves from the old container to
// the new one.
type TrafficMode string

const (
	// TrafficNone: nothing in front; the published ports are handed over
	// when the old container stops.
	TrafficNone TrafficMode = "none"
	// TrafficRelay: nginx sends to baton's relay, which switches between
	// the containers.
	TrafficRelay TrafficMode = "relay"
	// TrafficNginx: baton rewrites nginx's upstream file and reloads it.
	TrafficNginx TrafficMode = "nginx"
)

// moves reports whether the mode moves traffic between the containers
// (switch, then drain) rather than handing ports over.
func (m TrafficMode) moves() bool { return m == TrafficRelay || m == TrafficNginx }

// StepKind is what one step of a plan does; the executor has one action for
// each.
type StepKind string

const (
	StepNothing   StepKind = "nothing"    // up to date: make sure traffic reaches the serving container
	StepExplain   StepKind = "explain"    // say why an unchanged image is redeployed
	StepCreate    StepKind = "create"     // create the new container, not started
	StepJoin      StepKind = "join"       // connect it to the networks it warms up on
	StepWarm      StepKind = "warm"       // start it and wait until it is healthy
	StepPreSwitch StepKind = "pre-switch" // run the operator's command in it (--pre-switch)
	StepCanary    StepKind = "canary"     // send a share of new connections to it first
	StepSwitch    StepKind = "switch"     // move traffic to it
	StepDrain     StepKind = "drain"      // wait for requests in flight on the old one
	StepBake      StepKind = "bake"       // keep the old one, out of rotation, to revert to
	StepStopOld   StepKind = "stop-old"   // stop the old container: the point of no return
	StepHandover  StepKind = "handover"   // connect the networks the old one held (published ports)
	StepFinalize  StepKind = "finalize"   // remove the old container, rename the new one
)

// Step is one step of a plan and the line --dry-run prints for it.
type Step struct {
	Kind StepKind
	Text string
}

// verdict is the up-to-date rule, the one place it lives: the service is up
// to date when the image to deploy is the one it runs, the settings are the
// recorded ones, and nobody asked for a redeploy. It returns why not.
func verdict(f *Facts) []string {
	var why []string
	switch {
	case !f.NewImageKnown:
		why = append(why, fmt.Sprintf("%s is not on this host yet, so whether it differs from the running image is known only after the pull", f.Ref))
	case f.NewImage.ID != f.Old.Image:
		why = append(why, fmt.Sprintf("the image changed (%s -> %s)", shortID(f.Old.Image), shortID(f.NewImage.ID)))
	case f.DryRun && f.Pull == PullAlways:
		// The pull may bring a new image under the same tag.
		why = append(why, fmt.Sprintf("--pull always pulls %s again first; if the image is still %s, the deploy stops there", f.Ref, shortID(f.NewImage.ID)))
	}
	if f.Force {
		why = append(why, "--force")
	}
	if f.Changed != "" {
		why = append(why, f.Changed)
	}
	if rec, now := f.Recorded.redeployKey(), f.Settings.redeployKey(); rec != now {
		why = append(why, fmt.Sprintf("settings changed (%s -> %s)", orNone(rec), orNone(now)))
	}
	return why
}

// decide is the deploy decision: pure, from the facts to the plan. It
// refuses what cannot be replaced without downtime (ErrInvalid,
// ErrUnsupported) and otherwise says what the deploy does, step by step.
func decide(f *Facts) (*Plan, error) {
	if err := checkTarget(f); err != nil {
		return nil, err
	}
	s := f.Settings
	p := &Plan{
		Service: f.Service.Key, Container: f.Service.Name,
		CurrentImage: f.Old.Config.Image, CurrentID: f.Old.Image,
		NewImage: f.Ref, Pull: describePull(f),
		Traffic: describeTraffic(s), TrafficMode: s.TrafficMode(), Settings: orNone(s.String()),
		Leftovers: f.Leftovers, IgnoredLabels: f.IgnoredLabels,
		settings: s, ref: f.Ref,
	}
	if f.NewImageKnown {
		p.NewImageID = f.NewImage.ID
	}
	p.Reasons = verdict(f)
	if len(p.Reasons) == 0 {
		p.UpToDate = true
		p.steps = []Step{{StepNothing, fmt.Sprintf("nothing: %s already runs %s", f.Service.Name, shortID(f.NewImage.ID))}}
		p.Steps = stepTexts(p.steps)
		return p, nil
	}
	if f.Spec == nil {
		return nil, fmt.Errorf("container %s: no configuration was built for the new container", f.Service.Name)
	}
	spec := f.Spec
	if err := checkStateful(spec, s); err != nil {
		return nil, err
	}
	mode := string(spec.HostConfig.NetworkMode)
	if mode == "none" && (p.TrafficMode != TrafficNone || s.HTTPProbe != "" || s.TCPProbe) {
		return nil, classify(ErrInvalid, "container %s has network mode none, so nothing can reach it: no probes, relay or nginx", f.Service.Name)
	}
	if err := checkDrift(f, spec, p); err != nil {
		return nil, err
	}
	p.Follows = f.SpecNote
	p.Exclusive = spec.Exclusive
	if f.NewImageKnown {
		p.Changes = spec.Diff
	} else {
		p.ChangesUnknown = true
	}
	p.nets = planNetworks(spec, f.BatonNet, f.Service.Name)
	p.Isolated = p.nets.Isolated
	p.config, p.hostConfig = newContainerConfig(f, spec, p.nets)
	p.steps = deploySteps(f, p)
	p.Steps = stepTexts(p.steps)
	return p, nil
}

// checkDrift refuses a new container that cannot have every setting of the
// old one, naming each such setting, unless the operator accepted it
// (--accept-drift FIELD); then the plan says what the new container gets
// instead. Before anything is created, so a refusal changes nothing.
func checkDrift(f *Facts, spec *dockerctl.CloneSpec, p *Plan) error {
	accepted := map[string]bool{}
	for _, a := range strings.Split(f.Settings.AcceptDrift, ",") {
		if a != "" {
			accepted[a] = true
		}
	}
	var refused []string
	drift := dockerctl.Drift(f.Old, spec)
	if len(f.ComposeInjected) > 0 {
		drift = append(drift, dockerctl.DriftField{Field: dockerctl.DriftComposeInjected, Old: strings.Join(f.ComposeInjected, ", "),
			Reason:  "compose copied them into the old container's filesystem when it created it, and baton creates its replacement from the container's configuration, which does not hold them",
			Instead: "no such files"})
	}
	for _, d := range drift {
		if !accepted[d.Field] {
			refused = append(refused, fmt.Sprintf("%s %s (%s; --accept-drift %s gives it %s)", d.Field, d.Old, d.Reason, d.Field, d.Instead))
			continue
		}
		p.Drift = append(p.Drift, d)
	}
	if len(refused) > 0 {
		return classify(ErrUnsupported, "container %s has settings its replacement cannot have: %s; nothing was changed", f.Service.Name, strings.Join(refused, "; "))
	}
	p.Carried = dockerctl.Carried(spec)
	return nil
}

// checkTarget refuses a container baton cannot replace without downtime,
// and settings that need what the container does not say. Gathering calls
// it before pulling, so a refusal pulls nothing.
func checkTarget(f *Facts) error {
	if err := checkContainer(f.Old, f.Service.Name); err != nil {
		return err
	}
	if err := checkPortNeeded(f.Settings, f.Old, f.Service.Name); err != nil {
		return err
	}
	return checkRemoteFacts(f)
}

// checkPortNeeded fails early when a probe, the relay or nginx needs the
// app's port and the container does not say which it is.
func checkPortNeeded(s Settings, old container.InspectResponse, name string) error {
	if s.Port != 0 {
		return nil
	}
	var needs []string
	if s.HTTPProbe != "" {
		needs = append(needs, "--http-probe")
	}
	if s.TCPProbe {
		needs = append(needs, "--tcp-probe")
	}
	if s.NginxUpstream != "" {
		needs = append(needs, "--nginx-upstream")
	}
	if len(needs) == 0 {
		return nil
	}
	return classify(ErrInvalid, "%s needs the app's port, and container %s exposes %s; pass --port",
		strings.Join(needs, " and "), name, describeExposed(old))
}

// imageRef is the image a deploy of old deploys: the one asked for,
// normalised, else the one the container was started from.
func imageRef(old container.InspectResponse, req Request, name string) (string, error) {
	switch {
	case req.ImageID != "":
		return req.Image, nil
	case req.Image != "":
		named, err := reference.ParseNormalizedNamed(req.Image)
		if err != nil {
			return "", classify(ErrInvalid, "--image %q is not a valid image reference: %v", req.Image, err)
		}
		return reference.FamiliarString(reference.TagNameOnly(named)), nil
	case strings.HasPrefix(old.Config.Image, "sha256:"):
		return "", classify(ErrInvalid, "container %s was started from image ID %s, not a name baton could pull again; pass --image", name, shortID(old.Config.Image))
	}
	return old.Config.Image, nil
}

// newContainerConfig is the spec with baton's labels (the settings, the
// service, the container it replaces and its image, for a rollback), the
// exact image when one is pinned, and the network mode it is created in.
func newContainerConfig(f *Facts, spec *dockerctl.CloneSpec, nets networkPlan) (*container.Config, *container.HostConfig) {
	cfg := *spec.Config
	cfg.Labels = maps.Clone(spec.Config.Labels)
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	maps.Copy(cfg.Labels, f.Settings.Labels())
	cfg.Labels[LabelManaged] = "true"
	cfg.Labels[LabelService] = f.Service.Key
	cfg.Labels[LabelRole] = RoleApp
	cfg.Labels[LabelReplaces] = f.Old.ID
	cfg.Labels[LabelPreviousImage] = f.Old.Config.Image
	cfg.Labels[LabelPreviousImageID] = f.Old.Image
	if f.ImageID != "" {
		// Pin the exact image: the tag may point elsewhere by now.
		cfg.Image = f.ImageID
	}
	host := *spec.HostConfig
	host.NetworkMode = container.NetworkMode(nets.NetworkMode)
	return &cfg, &host
}

// newName is the name the new container has until it takes the service's.
func newName(service, deployID string) string { return service + "-baton-" + deployID }

func deploySteps(f *Facts, p *Plan) []Step {
	name, s, nets := f.Service.Name, p.settings, p.nets
	tmp := newName(name, "<id>")
	var steps []Step
	if f.sameImage() && !f.Force {
		steps = append(steps, Step{StepExplain, "redeploy although the image is unchanged: " + strings.Join(p.Reasons, "; ")})
	}
	steps = append(steps, Step{StepCreate, "create " + tmp + " from " + f.Ref})
	switch {
	case nets.Isolated:
		text := fmt.Sprintf("warm it up on %s, its service's internal network (it publishes %s, which %s holds)", f.BatonNet, strings.Join(p.Exclusive, ", "), name)
		var copies []string
		for _, a := range mirrorsFor(nets) {
			copies = append(copies, a.Name)
		}
		if len(copies) > 0 {
			text += " and on internal copies of " + strings.Join(copies, ", ") + " (made once, kept while those networks exist), so it reaches its peers by name"
		}
		steps = append(steps, Step{StepJoin, text})
	case nets.NetworkMode != "none":
		steps = append(steps, Step{StepJoin, "warm it up on its networks (" + attachmentNames(nets) + ") without published traffic"})
	}
	steps = append(steps, Step{StepWarm, "wait until healthy (up to " + s.HealthTimeout.String() + ")"})
	if s.PreSwitch != "" {
		steps = append(steps, Step{StepPreSwitch, "run " + s.PreSwitch + " in " + tmp + " with docker exec (--pre-switch); a non-zero exit aborts, " + name + " keeps serving"})
	}
	switch p.TrafficMode {
	case TrafficRelay:
		if c := s.Canary; c.Percent > 0 {
			steps = append(steps, Step{StepCanary, canaryText(name, s)})
		}
		steps = append(steps, Step{StepSwitch, "switch baton's relay to it"})
	case TrafficNginx:
		steps = append(steps, Step{StepSwitch, "rewrite " + s.NginxUpstream + " to it and reload nginx"})
	}
	if p.TrafficMode.moves() {
		text := "wait for requests in flight and long-lived connections on " + name + " to finish (up to " + s.Drain.String() + "; those still open then are cut and counted)"
		if s.DrainSignal != "" {
			text = "send " + s.DrainSignal + " to " + name + " (--drain-signal), then " + text
		}
		steps = append(steps, Step{StepDrain, text})
	}
	if s.Bake > 0 {
		how := "in one relay call"
		if p.TrafficMode == TrafficNginx {
			how = "by rewriting " + s.NginxUpstream + " and reloading nginx"
		}
		steps = append(steps, Step{StepBake, fmt.Sprintf("bake for %s: keep %s running out of rotation and send traffic back to it %s if %s", s.Bake, name, how, strings.Replace(watchedFor(s), "it ", "the new container ", 1))})
	}
	steps = append(steps, Step{StepStopOld, "stop " + name + " gracefully (point of no return)"})
	steps = append(steps, afterNoReturnSteps(name, tmp, nets.AtHandover)...)
	return steps
}

func canaryText(name string, s Settings) string {
	c := s.Canary
	if c.Duration == 0 {
		return fmt.Sprintf("canary: send %d%% of new connections to it, the rest to %s, and return; baton promote %s goes on with the steps below, baton abort %s sends all back to %s", c.Percent, name, name, name, name)
	}
	return fmt.Sprintf("canary: send %d%% of new connections to it for %s, the rest to %s; back to %s in one relay call if it %s", c.Percent, c.Duration, name, name, watchedFor(s))
}

// afterNoReturnSteps are the steps after the old container stopped; a
// recovery that rolls forward rebuilds them from the deploy record.
func afterNoReturnSteps(name, tmp string, handover []dockerctl.NetworkAttachment) []Step {
	var steps []Step
	if len(handover) > 0 {
		var names []string
		for _, a := range handover {
			names = append(names, a.Name)
		}
		steps = append(steps, Step{StepHandover, "connect the new container to " + strings.Join(names, ", ") + " (it takes over the published ports)"})
	}
	return append(steps, Step{StepFinalize, "remove " + name + " (volumes kept) and rename " + tmp + " to " + name})
}

// planFromRecord is the plan of an interrupted deploy, rebuilt from its
// record for recovery: the settings, traffic and the steps after the point
// of no return.
func planFromRecord(rec Record) *Plan {
	p := &Plan{
		Service: rec.Service.Key, Container: rec.Service.Name, CurrentImage: rec.OldImage, NewImage: rec.NewImage,
		TrafficMode: rec.Settings.TrafficMode(), Settings: orNone(rec.Settings.String()),
		settings: rec.Settings, ref: rec.NewImage,
		nets: networkPlan{AtHandover: rec.Handover, Isolated: rec.Isolated},
	}
	p.steps = afterNoReturnSteps(rec.OldName, rec.NewName, rec.Handover)
	p.Steps = stepTexts(p.steps)
	return p
}

// servingPlan is the plan of a service that is up to date: keep traffic on
// its serving container (baton status repairs traffic with it).
func servingPlan(svc Service, s Settings) *Plan {
	return &Plan{Service: svc.Key, Container: svc.Name, UpToDate: true, TrafficMode: s.TrafficMode(), settings: s}
}

func stepTexts(steps []Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Text
	}
	return out
}

// specError sorts an error from building the new container's configuration
// into the kinds a caller reacts to: refusals (nothing changed) stay what
// they are; anything else is a failure in phase.
func specError(err error, phase Phase, name string) error {
	switch {
	case errors.Is(err, ErrUnsupported), errors.Is(err, ErrInvalid):
		return err
	case errors.Is(err, dockerctl.ErrUnsupported):
		return classify(ErrUnsupported, "%v", err)
	}
	return &PhaseError{Phase: phase, OldServing: true, Err: fmt.Errorf("container %s: %w", name, err)}
}

func describePull(f *Facts) string {
	switch {
	case f.NewImageKnown && f.DryRun && f.Pull == PullAlways:
		return fmt.Sprintf("%s is on this host as %s; would pull it again (--pull %s) and compare", f.Ref, shortID(f.NewImage.ID), f.Pull)
	case f.NewImageKnown:
		return fmt.Sprintf("%s is on this host as %s", f.Ref, shortID(f.NewImage.ID))
	case f.Pull == PullNever:
		return fmt.Sprintf("%s is not on this host and --pull never forbids pulling: the deploy would fail", f.Ref)
	}
	return fmt.Sprintf("would pull %s (not on this host yet; the configuration changes below assume its defaults are unknown)", f.Ref)
}

func describeTraffic(s Settings) string {
	switch s.TrafficMode() {
	case TrafficRelay:
		return "baton relay behind nginx (" + s.NginxUpstream + ")"
	case TrafficNginx:
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
