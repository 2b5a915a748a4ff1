package deploy

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultUpstreamDir is where baton may write nginx upstream files unless
// the operator allows more directories (--upstream-dir, or upstream-dir in
// the configuration file).
const DefaultUpstreamDir = "/etc/nginx/baton"

// DefaultConfigPath is baton's root-owned configuration file.
const DefaultConfigPath = "/etc/baton/baton.conf"

// commandSettings are the settings that make baton run something, or
// change the host as root beyond the service's own containers and files,
// each with what it is, for messages. They come only from a flag (or its
// environment variable), the service's record in the state directory (a
// flag given earlier) or the configuration file; never from a label.
var commandSettings = map[string]string{
	"nginx-reload": "command",
	"pre-switch":   "command",
	"kernel-path":  "firewall rule",
}

// hostOnlySettings change nothing on the container: a change of one is
// made by an up-to-date deploy (its Ensure), without a redeploy.
var hostOnlySettings = []string{"kernel-path"}

// Policy is what the operator allows, from flags, the environment and the
// root-owned configuration file: nothing in it ever comes from a container.
type Policy struct {
	// UpstreamDirs are the directories upstream files may be in, besides
	// DefaultUpstreamDir.
	UpstreamDirs []string
	// Config holds the settings of the configuration file, by setting name,
	// for every service.
	Config map[string]string
	// ConfigPath names the configuration file in messages.
	ConfigPath string
}

// Sources are where one deploy's settings can come from.
type Sources struct {
	Flags       map[string]string // given now, as flags or their environment variables
	Recorded    map[string]string // flags given to an earlier deploy of the service, from the state directory
	Labels      map[string]string // the container's labels
	ImageLabels map[string]string // its image's labels: a label equal to one of these is the image author's
	// Outvoting are flags given now that outvote an operator's command
	// label without being applied: resolving what a service was deployed
	// with leaves this deploy's flags out, yet must not refuse what they
	// settle.
	Outvoting map[string]string
}

// Resolved is the outcome of resolving settings.
type Resolved struct {
	Settings Settings
	// Sticky is what to record for the service's next deploys: the recorded
	// flags with this deploy's flags over them.
	Sticky map[string]string
	// Ignored lists the baton.* and com.docker.compose.* labels ("key=value")
	// ignored because the image carries them.
	Ignored []string

	own map[string]string // the operator's labels
}

// Resolve merges, for each setting: the default, under the configuration
// file, under the operator's labels (those that differ from the image's),
// under the recorded flags, under the flags given now. Commands skip the
// labels: an operator's label that would set one differently is refused,
// naming the flag to use. Upstream files must lie in an allowed directory.
// It reads no file and calls no engine, so it can be fuzzed.
func (p Policy) Resolve(src Sources) (Resolved, error) {
	res := Resolved{Settings: DefaultSettings(), Sticky: map[string]string{}}
	own, ignored := OwnLabels(src.Labels, src.ImageLabels)
	res.Ignored, res.own = ignored, own
	maps.Copy(res.Sticky, src.Recorded)
	maps.Copy(res.Sticky, src.Flags)
	from := map[string]string{} // setting -> where its value came from, for messages
	s := &res.Settings

	apply := func(name, v, origin string) error {
		d, ok := findSetting(name)
		if !ok {
			return classify(ErrInvalid, "%s: unknown setting %q", origin, name)
		}
		if err := d.set(s, v); err != nil {
			return classify(ErrInvalid, "%s %q: %v", origin, v, err)
		}
		from[name] = origin
		return nil
	}
	cfgOrigin := func(name string) string {
		return fmt.Sprintf("%s in %s", name, orDefault(p.ConfigPath, DefaultConfigPath))
	}
	if _, ok := p.Config["pre-switch"]; ok {
		// One command for every service (a migration, a smoke test) is
		// not what a pre-switch step is; ignoring it would be worse.
		return res, classify(ErrInvalid, "%s: a pre-switch step belongs to one service; remove it there and give --pre-switch on that service's deploy (it is recorded for later deploys)", cfgOrigin("pre-switch"))
	}
	for _, name := range sortedKeys(p.Config) {
		if commandSettings[name] != "" {
			continue // applied last, only where it fits
		}
		if err := apply(name, p.Config[name], cfgOrigin(name)); err != nil {
			return res, err
		}
	}
	for _, d := range settingDefs {
		key := settingLabelPrefix + d.name
		v, ok := own[key]
		if !ok || commandSettings[d.name] != "" {
			continue
		}
		if err := apply(d.name, v, "label "+key); err != nil {
			return res, err
		}
	}
	for _, name := range sortedKeys(src.Recorded) {
		if err := apply(name, src.Recorded[name], "--"+name+" (recorded in the state directory)"); err != nil {
			return res, err
		}
	}
	// A flag given now for the other way of reloading nginx replaces a
	// recorded one: "pick one" is about what the operator says now.
	if _, ok := src.Flags["nginx-container"]; ok && src.Flags["nginx-reload"] == "" {
		s.NginxReload = ""
	}
	if _, ok := src.Flags["nginx-reload"]; ok && src.Flags["nginx-container"] == "" {
		s.NginxContainer = ""
	}
	for _, name := range sortedKeys(src.Flags) {
		if err := apply(name, src.Flags[name], "--"+name); err != nil {
			return res, err
		}
	}
	// An outvoting reload command stands in for the label it outvotes, so
	// the settings stay whole (an upstream file needs a way to reload).
	if v, ok := src.Outvoting["nginx-reload"]; ok && s.NginxReload == "" && s.NginxUpstream != "" && s.NginxContainer == "" {
		if err := apply("nginx-reload", v, "--nginx-reload"); err != nil {
			return res, err
		}
	}
	// The configuration file's reload command serves every service whose
	// nginx runs on the host and that names none of its own.
	if v, ok := p.Config["nginx-reload"]; ok && s.NginxReload == "" && s.NginxUpstream != "" && s.NginxContainer == "" {
		if err := apply("nginx-reload", v, cfgOrigin("nginx-reload")); err != nil {
			return res, err
		}
	}
	// The nginx container is named by a label alone when no flag, record
	// or the configuration file gives that name (baton's own copy of an
	// operator's choice on the container says the same as the choice).
	s.nginxByLabel = s.NginxContainer != "" && strings.HasPrefix(from["nginx-container"], "label ") && s.NginxContainer != p.Config["nginx-container"]
	// The configuration file's kernel path serves every service it fits:
	// a relay for an nginx container the operator named, or for an nginx
	// on the host, on a loopback address.
	if v, ok := p.Config["kernel-path"]; ok {
		if _, set := from["kernel-path"]; !set {
			if err := apply("kernel-path", v, cfgOrigin("kernel-path")); err != nil {
				return res, err
			}
			if !s.kernelPathFits() || s.nginxByLabel {
				// A label names no container for baton's rules (see
				// below): that service keeps the relay alone.
				s.KernelPath = false
			}
		}
	}
	given := maps.Clone(src.Outvoting)
	if given == nil {
		given = map[string]string{}
	}
	maps.Copy(given, src.Flags)
	if err := p.refuseCommandLabels(own, *s, given); err != nil {
		return res, err
	}
	// With the kernel path, the nginx container is where baton writes a
	// firewall rule as root: a label must not choose it.
	if s.KernelPath && s.nginxByLabel {
		return res, classify(ErrInvalid, "%s=%q: with --kernel-path baton writes a firewall rule in that container's network namespace as root, which it takes from no label; pass --nginx-container %s (baton records it for later deploys)",
			from["nginx-container"], s.NginxContainer, s.NginxContainer)
	}
	if err := s.validate(); err != nil {
		return res, err
	}
	if s.NginxUpstream != "" {
		origin := orDefault(from["nginx-upstream"], "--nginx-upstream")
		// A path recorded from an earlier deploy's flag was allowed then, by
		// the operator; a cron or watch deploy without that deploy's
		// --upstream-dir keeps using it. Labels and flags given now must be
		// in an allowed directory.
		recorded := src.Recorded["nginx-upstream"] == s.NginxUpstream && strings.HasSuffix(origin, "(recorded in the state directory)")
		if err := p.checkUpstreamPath(s.NginxUpstream, origin, recorded); err != nil {
			return res, err
		}
	}
	return res, nil
}

// refuseCommandLabels refuses an operator's label that tries to set a
// command. A label equal to the command baton uses anyway is a mirror an
// earlier version wrote; with a flag given now, the label is outvoted (and
// not copied onto the new container).
func (p Policy) refuseCommandLabels(own map[string]string, s Settings, flags map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(commandSettings)) {
		v, ok := own[settingLabelPrefix+name]
		if !ok {
			continue
		}
		if _, given := flags[name]; given {
			continue
		}
		d, _ := findSetting(name)
		if v == d.get(&s) {
			continue
		}
		flag := "--" + name
		if commandSettings[name] == "command" {
			flag += " CMD"
		}
		return classify(ErrInvalid, "label %s%s=%q: baton takes no %s from a label; pass %s (baton records it for later deploys) or set %s in %s",
			settingLabelPrefix, name, v, commandSettings[name], flag, name, orDefault(p.ConfigPath, DefaultConfigPath))
	}
	return nil
}

// AllowedUpstreamDirs are the directories upstream files may be in.
func (p Policy) AllowedUpstreamDirs() []string {
	dirs := []string{DefaultUpstreamDir}
	for _, d := range p.UpstreamDirs {
		if d = filepath.Clean(d); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// checkUpstreamPath is the lexical check: an absolute, clean path inside an
// allowed directory. CheckUpstreamFS adds what only the filesystem knows.
func (p Policy) checkUpstreamPath(path, origin string, anyDir bool) error {
	if !filepath.IsAbs(path) {
		return classify(ErrInvalid, "%s %q must be an absolute path", origin, path)
	}
	if filepath.Clean(path) != path || strings.ContainsAny(path, "\x00\n") {
		return classify(ErrInvalid, "%s %q is not a clean path (no .., //, trailing / or control characters); write it as %s", origin, path, filepath.Clean(path))
	}
	if anyDir {
		return nil
	}
	for _, dir := range p.AllowedUpstreamDirs() {
		if dir == "/" || strings.HasPrefix(path, dir+"/") {
			return nil
		}
	}
	return classify(ErrInvalid, "%s %q is outside the directories baton may write upstream files in (%s); put it there, or allow its directory with --upstream-dir DIR or upstream-dir in %s",
		origin, path, strings.Join(p.AllowedUpstreamDirs(), ", "), orDefault(p.ConfigPath, DefaultConfigPath))
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
