package dockerctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"path"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// ErrUnsupported marks a container whose configuration cannot run twice at
// once, so no second copy can be warmed up beside it. Its text completes the
// sentence of the error that wraps it.
var ErrUnsupported = errors.New("cannot be replaced without downtime")

// Label prefixes with a fixed meaning for cloning: baton sets its own labels
// on every container it creates, and compose labels identify the service even
// when they happen to equal an image label.
const (
	batonLabelPrefix   = "baton."
	composeLabelPrefix = "com.docker.compose."
)

// CloneSpec is everything needed to create the replacement of a container:
// the old container's configuration, as the user gave it, applied to a new
// image.
type CloneSpec struct {
	Config     *container.Config
	HostConfig *container.HostConfig
	// Networks are the old container's networks, the primary one (named by
	// HostConfig.NetworkMode) first, then sorted by name. Engines before API
	// 1.44 accept one network at create: pass the first in the
	// NetworkingConfig and connect the rest before the start.
	Networks []NetworkAttachment
	// Exclusive lists, human-readable, the resources two containers cannot
	// hold at once ("host port 127.0.0.1:8080/tcp", "static IP 10.5.0.7 on
	// network shop"). Non-empty means the new container must be warmed up
	// isolated and be given these only after the old one stops.
	Exclusive []string
	// Diff lists what the new container will have that the old one has not,
	// for a dry run: the image, and every default of the new image that
	// differs from the old one's where the user did not set the field.
	Diff []FieldDiff
}

// NetworkAttachment is one network the new container joins.
type NetworkAttachment struct {
	// Name is the network's name, as keyed in the old container's
	// NetworkSettings.Networks.
	Name string
	// Endpoint holds only what NetworkConnect or a NetworkingConfig takes:
	// aliases, links, IPAM config and driver options, no runtime data and
	// never a MAC address (it would clash while both run). NetworkID is
	// kept: it names the network even where its name is ambiguous, and
	// recent engines resolve a user-defined network by it when it is set.
	Endpoint *network.EndpointSettings
	// Exclusive is set when the endpoint holds an address the running old
	// container still has: a static IP, or the MAC the user chose (which is
	// not copied; see CloneSpec.Exclusive).
	Exclusive bool
}

// FieldDiff is one difference between the old container's configuration and
// the one the new container will run with.
type FieldDiff struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// Rediff recomputes Diff after the caller changed the spec's Config (a
// compose file's settings applied to the copy, say).
func (s *CloneSpec) Rediff(old container.InspectResponse, oldImage, newImage image.InspectResponse) {
	s.Diff = configDiff(old, oldImage.ID, s.Config, imageConfig(newImage), newImage.ID)
}

// CloneConfig derives the configuration of the container that replaces old,
// running newImage (referred to as newImageRef). It is pure: it reads the
// inspect data and touches no engine.
//
// The engine merges image defaults into a container's Config at create, so
// the old Config mixes what the user set with the old image's defaults.
// CloneConfig passes on only what differs from those defaults, so the new
// image's defaults apply wherever the user set nothing, as they would had
// the user run the same command against the new image.
func CloneConfig(old container.InspectResponse, oldImage, newImage image.InspectResponse, newImageRef string) (*CloneSpec, error) {
	if old.ContainerJSONBase == nil || old.Config == nil || old.HostConfig == nil {
		return nil, fmt.Errorf("container %s: inspect data lacks its Config or HostConfig", containerRef(old))
	}
	name := containerName(old)
	mode := old.HostConfig.NetworkMode
	switch {
	case mode.IsHost():
		return nil, fmt.Errorf("container %s uses network mode host: a second copy cannot listen on the same ports, so it %w", name, ErrUnsupported)
	case mode.IsContainer():
		return nil, fmt.Errorf("container %s uses network mode %s: it shares the network stack of container %s, where a second copy cannot listen on the same ports, so it %w",
			name, mode, mode.ConnectedContainer(), ErrUnsupported)
	}

	oldImg, newImg := imageConfig(oldImage), imageConfig(newImage)
	spec := &CloneSpec{Config: cloneContainerConfig(old, oldImg, newImageRef)}

	hc, err := cloneHostConfig(old)
	if err != nil {
		return nil, err
	}
	spec.HostConfig = hc
	spec.Exclusive = append(spec.Exclusive, portExclusives(hc.PortBindings)...)

	nets, netExclusive := cloneNetworks(old)
	spec.Networks = nets
	spec.Exclusive = append(spec.Exclusive, netExclusive...)

	spec.Diff = configDiff(old, oldImage.ID, spec.Config, newImg, newImage.ID)
	return spec, nil
}

// cloneContainerConfig keeps of old.Config what the user set, judged against
// the old image's defaults.
func cloneContainerConfig(old container.InspectResponse, img dockerspec.DockerOCIImageConfig, newImageRef string) *container.Config {
	oc := old.Config
	cfg := &container.Config{
		Image:           newImageRef,
		Domainname:      oc.Domainname,
		Env:             userEnv(oc.Env, img.Env),
		Labels:          userLabels(oc.Labels, img.Labels),
		ExposedPorts:    userExposedPorts(oc.ExposedPorts, img.ExposedPorts, old.HostConfig.PortBindings),
		Volumes:         userVolumes(oc.Volumes, img.Volumes),
		Healthcheck:     userHealthcheck(oc.Healthcheck, img.Healthcheck),
		Tty:             oc.Tty,
		OpenStdin:       oc.OpenStdin,
		StdinOnce:       oc.StdinOnce,
		AttachStdin:     oc.AttachStdin,
		AttachStdout:    oc.AttachStdout,
		AttachStderr:    oc.AttachStderr,
		NetworkDisabled: oc.NetworkDisabled,
		// Shell and OnBuild only matter when building on top of the image,
		// and MacAddress would clash with the old container's while both
		// run: none of them is carried over.
	}
	if oc.StopTimeout != nil {
		t := *oc.StopTimeout
		cfg.StopTimeout = &t
	}
	// An unset hostname defaults to the container's short ID: copying it
	// would give the new container the old one's ID as its name.
	if oc.Hostname != shortID(old.ID) {
		cfg.Hostname = oc.Hostname
	}
	if oc.WorkingDir != img.WorkingDir {
		cfg.WorkingDir = oc.WorkingDir
	}
	if oc.User != img.User {
		cfg.User = oc.User
	}
	if oc.StopSignal != img.StopSignal {
		cfg.StopSignal = oc.StopSignal
	}
	cfg.Entrypoint, cfg.Cmd = userCommand(oc.Entrypoint, oc.Cmd, img.Entrypoint, img.Cmd)
	return cfg
}

// userEnv returns the entries of env that are not the image's defaults, in
// their order. An entry equal to the image's default (same key and value) is
// indistinguishable from one the engine merged in, so it is dropped and
// follows the new image's default: a user who pinned a value that happened to
// be the old default gets the new default.
func userEnv(env, imageEnv []string) []string {
	defaults := make(map[string]struct{}, len(imageEnv))
	for _, e := range imageEnv {
		defaults[e] = struct{}{}
	}
	var out []string
	for _, e := range env {
		if _, ok := defaults[e]; !ok {
			out = append(out, e)
		}
	}
	return out
}

// userCommand applies the engine's merge rule in reverse. At create, the
// engine takes the image's Entrypoint only when the user gave none, and the
// image's Cmd only when the user gave neither an Entrypoint nor a Cmd. So a
// differing Entrypoint, or an empty Cmd where the image has one, means the
// user set the Entrypoint, and then the Cmd is the user's too (even if it
// looks like the image's): both are copied. Otherwise only a differing Cmd is
// the user's.
func userCommand(ep, cmd, imgEP, imgCmd []string) (strslice.StrSlice, strslice.StrSlice) {
	switch {
	case !sameArgs(ep, imgEP) || (emptyArgs(cmd) && !emptyArgs(imgCmd)):
		if emptyArgs(ep) {
			// The engine stores a cleared entrypoint as null; the API
			// clears an image's entrypoint with [""].
			return strslice.StrSlice{""}, slices.Clone(cmd)
		}
		return slices.Clone(ep), slices.Clone(cmd)
	case !sameArgs(cmd, imgCmd):
		return nil, slices.Clone(cmd)
	default:
		return nil, nil
	}
}

// emptyArgs reports whether args sets nothing; [""] is how the API spells a
// cleared entrypoint.
func emptyArgs(args []string) bool {
	return len(args) == 0 || (len(args) == 1 && args[0] == "")
}

func sameArgs(a, b []string) bool {
	if emptyArgs(a) || emptyArgs(b) {
		return emptyArgs(a) == emptyArgs(b)
	}
	return slices.Equal(a, b)
}

// deployLabels are the labels baton writes for each deploy (identity,
// lineage); the caller sets them afresh. Other baton.* labels (settings,
// baton.enable, baton.stateful...) are the user's and are kept.
var deployLabels = map[string]bool{
	"baton.managed": true, "baton.service": true, "baton.role": true, "baton.deploy-id": true,
	"baton.replaces": true, "baton.previous-image": true, "baton.previous-image-id": true,
	// A command never comes from a label (baton keeps it in its state
	// directory); an earlier version's mirror is not carried forward.
	"baton.nginx-reload": true, "baton.pre-switch": true,
}

// userLabels returns the labels the user set: not the old image's (same key
// and value: Docker copied them, and the new image brings its own), and none
// of those baton writes for each deploy. Copying an image's baton.* or
// compose label as the container's own would turn an image author's word
// into the operator's. The map is never nil, so the caller can add to it.
//
// compose (v2) labels the images it builds with their project and service;
// a container compose created (its config-files label, which compose never
// puts on an image, is its own) keeps those (deploy.OwnLabels has the same
// rule).
func userLabels(labels, imageLabels map[string]string) map[string]string {
	out := make(map[string]string, len(labels))
	cf, hasCF := labels[composeConfigFiles]
	icf, imageCF := imageLabels[composeConfigFiles]
	composeMade := hasCF && (!imageCF || icf != cf)
	for k, v := range labels {
		if deployLabels[k] {
			continue
		}
		if iv, ok := imageLabels[k]; ok && iv == v && !(composeMade && composeBuildLabels[k]) {
			continue
		}
		out[k] = v
	}
	return out
}

const composeConfigFiles = composeLabelPrefix + "project.config_files"

var composeBuildLabels = map[string]bool{
	composeLabelPrefix + "project": true, composeLabelPrefix + "service": true, composeLabelPrefix + "version": true,
}

// userExposedPorts returns the ports the user exposed (those the image did
// not) and every port that has a binding, which the engine would otherwise
// only expose if the new image does.
func userExposedPorts(exposed nat.PortSet, imageExposed map[string]struct{}, bindings nat.PortMap) nat.PortSet {
	out := nat.PortSet{}
	for p := range exposed {
		if _, ok := imageExposed[string(p)]; !ok {
			out[p] = struct{}{}
		}
	}
	for p := range bindings {
		out[p] = struct{}{}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// userVolumes returns the volumes declared by the user (-v /path), not by
// the image.
func userVolumes(volumes, imageVolumes map[string]struct{}) map[string]struct{} {
	out := map[string]struct{}{}
	for v := range volumes {
		if _, ok := imageVolumes[v]; !ok {
			out[v] = struct{}{}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// userHealthcheck returns the healthcheck fields the user set. The engine
// merges a healthcheck field by field (a zero field inherits the image's), so
// each field is judged on its own: setting only --health-cmd keeps the new
// image's interval, as it would on a fresh create.
func userHealthcheck(hc, imageHC *container.HealthConfig) *container.HealthConfig {
	if hc == nil {
		return nil
	}
	var def container.HealthConfig
	if imageHC != nil {
		def = *imageHC
	}
	var out container.HealthConfig
	if !slices.Equal(hc.Test, def.Test) {
		out.Test = slices.Clone(hc.Test)
	}
	if hc.Interval != def.Interval {
		out.Interval = hc.Interval
	}
	if hc.Timeout != def.Timeout {
		out.Timeout = hc.Timeout
	}
	if hc.StartPeriod != def.StartPeriod {
		out.StartPeriod = hc.StartPeriod
	}
	if hc.StartInterval != def.StartInterval {
		out.StartInterval = hc.StartInterval
	}
	if hc.Retries != def.Retries {
		out.Retries = hc.Retries
	}
	if len(out.Test) == 0 && out.Interval == 0 && out.Timeout == 0 && out.StartPeriod == 0 && out.StartInterval == 0 && out.Retries == 0 {
		return nil
	}
	return &out
}

// cloneHostConfig copies old.HostConfig whole (it holds only what the user
// set, plus daemon defaults that are as valid for the new container) and
// pins the old container's anonymous volumes, so the new one sees their data.
func cloneHostConfig(old container.InspectResponse) (*container.HostConfig, error) {
	hc, err := deepCopy(old.HostConfig)
	if err != nil {
		return nil, fmt.Errorf("container %s: copy host config: %w", containerName(old), err)
	}
	// The old container wrote its ID there; the new one must not overwrite it.
	hc.ContainerIDFile = ""
	hc.Mounts = pinAnonymousVolumes(old.Mounts, hc.Binds, hc.Mounts, hc.Tmpfs)
	return hc, nil
}

// deepCopy copies v through JSON, which is how the engine's types are meant
// to travel, so no slice or map stays shared with the input, including those
// of fields later API versions add.
func deepCopy[T any](v *T) (*T, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		return nil, err
	}
	return out, nil
}

// pinAnonymousVolumes returns mounts (already a copy) extended so the new
// container mounts every volume of the old one by name. An anonymous volume
// (from an image VOLUME, `-v /path` or `--mount type=volume` without a
// source) would otherwise be replaced by a fresh, empty one. docker-compose
// does the same when it recreates a container. Volumes the user named in
// Binds or Mounts are left to those.
func pinAnonymousVolumes(points []container.MountPoint, binds []string, mounts []mount.Mount, tmpfs map[string]string) []mount.Mount {
	names := map[string]bool{}
	targets := map[string]bool{}
	for _, b := range binds {
		src, dst, _ := strings.Cut(b, ":")
		dst, _, _ = strings.Cut(dst, ":")
		names[src] = true
		targets[path.Clean(dst)] = true
	}
	for t := range tmpfs {
		targets[path.Clean(t)] = true
	}
	volumeAt := map[string]string{}
	for _, p := range points {
		if p.Type == mount.TypeVolume && p.Name != "" {
			volumeAt[path.Clean(p.Destination)] = p.Name
		}
	}
	for i := range mounts {
		m := &mounts[i]
		if m.Type == mount.TypeVolume && m.Source == "" {
			m.Source = volumeAt[path.Clean(m.Target)]
		}
		if m.Source != "" {
			names[m.Source] = true
		}
		targets[path.Clean(m.Target)] = true
	}
	var added []mount.Mount
	for _, p := range points {
		dst := path.Clean(p.Destination)
		if p.Type != mount.TypeVolume || p.Name == "" || names[p.Name] || targets[dst] {
			continue
		}
		added = append(added, mount.Mount{Type: mount.TypeVolume, Source: p.Name, Target: p.Destination, ReadOnly: !p.RW})
		targets[dst] = true
	}
	slices.SortFunc(added, func(a, b mount.Mount) int { return strings.Compare(a.Target, b.Target) })
	return append(mounts, added...)
}

// portExclusives names every binding to a fixed host port: the new container
// cannot bind it while the old one holds it. A random port ("" or "0") can be
// bound by both.
func portExclusives(bindings nat.PortMap) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(bindings)) {
		for _, b := range bindings[p] {
			if b.HostPort == "" || b.HostPort == "0" {
				continue
			}
			ip := b.HostIP
			if ip == "" {
				ip = "*"
			}
			out = append(out, fmt.Sprintf("host port %s/%s", net.JoinHostPort(ip, b.HostPort), p.Proto()))
		}
	}
	return out
}

// cloneNetworks returns the old container's networks as the new one must
// join them, and the addresses on them that cannot be shared.
func cloneNetworks(old container.InspectResponse) ([]NetworkAttachment, []string) {
	if old.NetworkSettings == nil {
		return nil, nil
	}
	primary := primaryNetwork(old.HostConfig.NetworkMode, old.NetworkSettings.Networks)
	// The engine adds the short ID, the name and the hostname as aliases on
	// user-defined networks itself; the caller adds the new container's own.
	implicit := map[string]bool{shortID(old.ID): true, containerName(old): true}
	if old.Config.Hostname != "" {
		implicit[old.Config.Hostname] = true
	}
	names := slices.Collect(maps.Keys(old.NetworkSettings.Networks))
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == primary:
			return -1
		case b == primary:
			return 1
		}
		return strings.Compare(a, b)
	})
	var nets []NetworkAttachment
	var exclusive []string
	for _, name := range names {
		src := old.NetworkSettings.Networks[name]
		if name == network.NetworkNone || src == nil || IsMirrorNetwork(name) || IsBatonNetwork(name) {
			continue // baton's networks are joined by the deploy itself, when needed
		}
		ep := &network.EndpointSettings{
			NetworkID:  src.NetworkID,
			Links:      slices.Clone(src.Links),
			DriverOpts: maps.Clone(src.DriverOpts),
			GwPriority: src.GwPriority,
		}
		// The default bridge network does not take aliases.
		if name != network.NetworkBridge {
			for _, a := range src.Aliases {
				if !implicit[a] && !slices.Contains(ep.Aliases, a) {
					ep.Aliases = append(ep.Aliases, a)
				}
			}
		}
		att := NetworkAttachment{Name: name, Endpoint: ep}
		if ipam := src.IPAMConfig; ipam != nil && (ipam.IPv4Address != "" || ipam.IPv6Address != "" || len(ipam.LinkLocalIPs) > 0) {
			ep.IPAMConfig = ipam.Copy()
			att.Exclusive = true
			for _, ip := range append([]string{ipam.IPv4Address, ipam.IPv6Address}, ipam.LinkLocalIPs...) {
				if ip != "" {
					exclusive = append(exclusive, fmt.Sprintf("static IP %s on network %s", ip, name))
				}
			}
		}
		nets = append(nets, att)
	}
	// Before API 1.44 a chosen MAC lives in Config.MacAddress and applies to
	// the primary network; there it is told apart from a generated one. The
	// MAC is not copied (it would clash while both run): the caller may set
	// it again once the old container is gone.
	if mac := old.Config.MacAddress; mac != "" { //nolint:staticcheck // SA1019: still how API < 1.44 reports a chosen MAC.
		if len(nets) > 0 && nets[0].Name == primary {
			nets[0].Exclusive = true
			exclusive = append(exclusive, fmt.Sprintf("MAC address %s on network %s", mac, primary))
		} else {
			exclusive = append(exclusive, "MAC address "+mac)
		}
	}
	return nets, exclusive
}

// primaryNetwork returns the key in nets of the network the container was
// created on (its NetworkMode), or "" when that is none of them.
func primaryNetwork(mode container.NetworkMode, nets map[string]*network.EndpointSettings) string {
	want := string(mode)
	if mode == "" || mode.IsDefault() {
		want = network.NetworkBridge
	}
	if _, ok := nets[want]; ok {
		return want
	}
	// NetworkMode may name the network by (a prefix of) its ID.
	for name, ep := range nets {
		if ep != nil && ep.NetworkID != "" && strings.HasPrefix(ep.NetworkID, want) {
			return name
		}
	}
	return ""
}

// configDiff lists how the new container's effective configuration (spec
// merged with the new image's defaults, as the engine will) differs from the
// old container's.
func configDiff(old container.InspectResponse, oldImageID string, spec *container.Config, img dockerspec.DockerOCIImageConfig, newImageID string) []FieldDiff {
	oc := old.Config
	eff := mergeImageDefaults(spec, img)
	var d []FieldDiff
	add := func(field, o, n string) {
		if o != n {
			d = append(d, FieldDiff{Field: field, Old: o, New: n})
		}
	}
	if oldImageID == "" {
		oldImageID = old.Image
	}
	add("image", imageLabel(oc.Image, oldImageID), imageLabel(spec.Image, newImageID))
	add("entrypoint", formatArgs(oc.Entrypoint), formatArgs(eff.Entrypoint))
	add("cmd", formatArgs(oc.Cmd), formatArgs(eff.Cmd))

	oldEnv, newEnv := envMap(oc.Env), envMap(eff.Env)
	for _, k := range slices.Sorted(maps.Keys(union(oldEnv, newEnv))) {
		add("env "+k, lookup(oldEnv, k), lookup(newEnv, k))
	}
	for _, k := range slices.Sorted(maps.Keys(union(oc.Labels, eff.Labels))) {
		if strings.HasPrefix(k, batonLabelPrefix) {
			continue // the caller replaces baton's labels
		}
		add("label "+k, lookup(oc.Labels, k), lookup(eff.Labels, k))
	}
	add("workdir", oc.WorkingDir, eff.WorkingDir)
	add("user", oc.User, eff.User)
	add("stop signal", oc.StopSignal, eff.StopSignal)
	add("healthcheck", formatHealthcheck(oc.Healthcheck), formatHealthcheck(eff.Healthcheck))
	add("exposed ports", formatSet(oc.ExposedPorts), formatSet(eff.ExposedPorts))
	add("volumes", formatSet(oc.Volumes), formatSet(eff.Volumes))
	if mac := oc.MacAddress; mac != "" { //nolint:staticcheck // SA1019: see cloneNetworks.
		add("mac address", mac, "(generated; hand over after the old container stops)")
	}
	return d
}

// mergeImageDefaults fills spec's unset fields from the image's defaults the
// way the engine does at create.
func mergeImageDefaults(spec *container.Config, img dockerspec.DockerOCIImageConfig) container.Config {
	c := *spec
	// User entries first, then the image's entries for keys the user left.
	c.Env = slices.Clone(spec.Env)
	userKeys := envMap(spec.Env)
	for _, e := range img.Env {
		k, _, _ := strings.Cut(e, "=")
		if _, ok := userKeys[k]; !ok {
			c.Env = append(c.Env, e)
		}
	}
	c.Labels = maps.Clone(img.Labels)
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	maps.Copy(c.Labels, spec.Labels)
	c.ExposedPorts = nat.PortSet{}
	for p := range img.ExposedPorts {
		c.ExposedPorts[nat.Port(p)] = struct{}{}
	}
	maps.Copy(c.ExposedPorts, spec.ExposedPorts)
	c.Volumes = maps.Clone(img.Volumes)
	if c.Volumes == nil {
		c.Volumes = map[string]struct{}{}
	}
	maps.Copy(c.Volumes, spec.Volumes)

	if len(spec.Entrypoint) == 0 {
		if len(spec.Cmd) == 0 {
			c.Cmd = img.Cmd
		}
		c.Entrypoint = img.Entrypoint
	}
	if emptyArgs(c.Entrypoint) {
		c.Entrypoint = nil
	}
	if c.WorkingDir == "" {
		c.WorkingDir = img.WorkingDir
	}
	if c.User == "" {
		c.User = img.User
	}
	if c.StopSignal == "" {
		c.StopSignal = img.StopSignal
	}
	c.Healthcheck = mergeHealthcheck(spec.Healthcheck, img.Healthcheck)
	return c
}

func mergeHealthcheck(hc, imageHC *container.HealthConfig) *container.HealthConfig {
	switch {
	case hc == nil && imageHC == nil:
		return nil
	case hc == nil:
		out := *imageHC
		return &out
	case imageHC == nil:
		out := *hc
		return &out
	}
	out := *hc
	if len(out.Test) == 0 {
		out.Test = imageHC.Test
	}
	if out.Interval == 0 {
		out.Interval = imageHC.Interval
	}
	if out.Timeout == 0 {
		out.Timeout = imageHC.Timeout
	}
	if out.StartPeriod == 0 {
		out.StartPeriod = imageHC.StartPeriod
	}
	if out.StartInterval == 0 {
		out.StartInterval = imageHC.StartInterval
	}
	if out.Retries == 0 {
		out.Retries = imageHC.Retries
	}
	return &out
}

func imageConfig(img image.InspectResponse) dockerspec.DockerOCIImageConfig {
	if img.Config == nil {
		return dockerspec.DockerOCIImageConfig{}
	}
	return *img.Config
}

// containerName is the container's name without the engine's leading slash.
func containerName(c container.InspectResponse) string {
	if c.ContainerJSONBase == nil {
		return ""
	}
	return strings.TrimPrefix(c.Name, "/")
}

// containerRef names a container for messages, by name or else by short ID.
func containerRef(c container.InspectResponse) string {
	if c.ContainerJSONBase == nil {
		return "(unknown)"
	}
	if n := containerName(c); n != "" {
		return n
	}
	return shortID(c.ID)
}

// shortID is the 12-character form of a container or image ID.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func imageLabel(ref, id string) string {
	if id == "" {
		return ref
	}
	return fmt.Sprintf("%s (%s)", ref, shortID(id))
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return m
}

func union[V any](a, b map[string]V) map[string]V {
	out := make(map[string]V, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

func lookup(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return "(unset)"
}

func formatArgs(args []string) string {
	if emptyArgs(args) {
		return "(none)"
	}
	b, err := json.Marshal(args)
	if err != nil {
		return strings.Join(args, " ")
	}
	return string(b)
}

func formatSet[K ~string](set map[K]struct{}) string {
	if len(set) == 0 {
		return "(none)"
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

func formatHealthcheck(hc *container.HealthConfig) string {
	if hc == nil || len(hc.Test) == 0 {
		return "(none)"
	}
	s := formatArgs(hc.Test)
	var opts []string
	if hc.Interval != 0 {
		opts = append(opts, "interval "+hc.Interval.String())
	}
	if hc.Timeout != 0 {
		opts = append(opts, "timeout "+hc.Timeout.String())
	}
	if hc.StartPeriod != 0 {
		opts = append(opts, "start period "+hc.StartPeriod.String())
	}
	if hc.StartInterval != 0 {
		opts = append(opts, "start interval "+hc.StartInterval.String())
	}
	if hc.Retries != 0 {
		opts = append(opts, fmt.Sprintf("retries %d", hc.Retries))
	}
	if len(opts) > 0 {
		s += " (" + strings.Join(opts, ", ") + ")"
	}
	return s
}
