package deploy

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/baton-sh/baton/dockerctl"
)

// Settings are the per-service knobs of a deploy. Where each may come from,
// and in which order, is resolve.go's business.
type Settings struct {
	Port           int           // the app's container port that traffic and probes use; 0 = derive from the container
	HTTPProbe      string        // path probed with GET on the new container until 2xx
	TCPProbe       bool          // probe the port with a TCP connect
	HealthTimeout  time.Duration // how long the new container may take to become healthy
	WarmupRequests int           // GETs sent to the probe path after healthy, before traffic moves
	// DockerHealthOnly waits for Docker's own runs of the HEALTHCHECK:
	// baton does not run it early in the new container (see healthSpec).
	DockerHealthOnly bool
	Drain            time.Duration // longest wait for in-flight connections to the old container after traffic moved
	StopTimeout      int           // seconds the old container gets to stop; -1 = its own
	NginxUpstream    string        // the upstream file baton owns
	NginxReload      string        // command that reloads nginx on the host, split by SplitCommand and run without a shell
	NginxContainer   string        // nginx container to send HUP to
	Relay            bool          // put baton's relay between nginx and the app
	RelayPort        int           // host port the relay listens on for an nginx on the host; 0 = pick one
	RelayAddress     string        // host IP the relay listens on for an nginx on the host; "" = 127.0.0.1
	DrainSignal      string        // signal sent to the old container when traffic moves, before the drain (SIGUSR1, ...)
	PreSwitch        string        // command run with docker exec in the healthy new container before traffic moves, split by SplitCommand
	AcceptDrift      string        // comma-separated clone fields (see dockerctl.Drift) the deploy may lose or change
	// Bake keeps the old container running, drained and out of rotation,
	// this long after the switch; the new one turning unhealthy, exiting or
	// restarting in that window reverts traffic to the old. 0 = no bake.
	Bake time.Duration
	// BakeMaxDialErrors, when more than 0, also reverts a bake or canary
	// once the relay counts more failed dials to the new container.
	BakeMaxDialErrors int
	// BakeMaxResets, when more than 0, also reverts a bake or canary once
	// the relay counts more connections the new container reset: an app
	// can pass its health check and still break the connections it serves.
	BakeMaxResets int
	// Canary sends a share of new connections to the new container first
	// (relay only); the zero value is no canary.
	Canary Canary
	// KernelPath lets the kernel carry the steady traffic of a relay for an
	// nginx on the host: between deploys a DNAT rule sends nginx's new
	// connections for the relay's loopback address straight to the serving
	// container (internal/kernelpath); a deploy takes the rule away, moves
	// traffic through the relay as always, and puts it back for the new
	// container. It changes the host's firewall, so it comes only from the
	// operator (a flag, its record, the configuration file), never a label.
	KernelPath bool
	// nginxByLabel says NginxContainer came from an operator's label
	// alone (see Resolve): baton then neither routes nor looks for rules
	// in that container's network namespace. Not a setting: never recorded.
	nginxByLabel bool
}

// Canary is --canary PERCENT[:DURATION]: PERCENT of new connections go to
// the new container for DURATION, then all; with no duration the canary
// waits for baton promote or baton abort.
type Canary struct {
	Percent  int
	Duration time.Duration
}

func (c Canary) String() string {
	switch {
	case c.Percent == 0:
		return ""
	case c.Duration == 0:
		return strconv.Itoa(c.Percent)
	}
	return strconv.Itoa(c.Percent) + ":" + c.Duration.String()
}

// ParseCanary reads a --canary value (PERCENT[:DURATION]).
func ParseCanary(v string) (Canary, error) {
	var c Canary
	err := parseCanary(v, &c)
	return c, err
}

func parseCanary(v string, dst *Canary) error {
	if v == "" || v == "0" {
		*dst = Canary{}
		return nil
	}
	pct, dur, timed := strings.Cut(v, ":")
	n, err := strconv.Atoi(strings.TrimSuffix(pct, "%"))
	if err != nil || n < 1 || n > 99 {
		return fmt.Errorf("want PERCENT[:DURATION], a share of 1 to 99 percent (0 turns the canary off) and an optional duration, like 20 or 20:5m")
	}
	c := Canary{Percent: n}
	if timed {
		if err := parsePositiveDuration(dur, &c.Duration); err != nil {
			return fmt.Errorf("duration %q after the percent: %v", dur, err)
		}
	}
	*dst = c
	return nil
}

// DefaultSettings are the values used when neither a flag nor a label says.
func DefaultSettings() Settings {
	return Settings{
		HealthTimeout: 60 * time.Second,
		Drain:         30 * time.Second,
		StopTimeout:   -1,
		Relay:         true,
	}
}

// setting describes one knob once, for flags, labels and validation alike.
type setting struct {
	name string // flag name and label suffix
	get  func(*Settings) string
	set  func(*Settings, string) error
}

var settingDefs = []setting{
	{"port", func(s *Settings) string { return itoa0(s.Port) }, func(s *Settings, v string) error { return parsePort(v, &s.Port) }},
	{"http-probe", func(s *Settings) string { return s.HTTPProbe }, func(s *Settings, v string) error {
		if v != "" && !strings.HasPrefix(v, "/") {
			return fmt.Errorf("must be a path starting with /, like /healthz")
		}
		s.HTTPProbe = v
		return nil
	}},
	{"tcp-probe", func(s *Settings) string { return boolStr(s.TCPProbe) }, func(s *Settings, v string) error { return parseBool(v, &s.TCPProbe) }},
	{"health-timeout", func(s *Settings) string { return s.HealthTimeout.String() }, func(s *Settings, v string) error { return parsePositiveDuration(v, &s.HealthTimeout) }},
	{"warmup-requests", func(s *Settings) string { return itoa0(s.WarmupRequests) }, func(s *Settings, v string) error { return parseNonNegative(v, &s.WarmupRequests) }},
	{"docker-health-only", func(s *Settings) string { return boolStr(s.DockerHealthOnly) }, func(s *Settings, v string) error { return parseBool(v, &s.DockerHealthOnly) }},
	{"drain", func(s *Settings) string { return s.Drain.String() }, func(s *Settings, v string) error { return parseDuration(v, &s.Drain) }},
	{"stop-timeout", func(s *Settings) string {
		if s.StopTimeout < 0 {
			return ""
		}
		return strconv.Itoa(s.StopTimeout) + "s"
	}, func(s *Settings, v string) error {
		var d time.Duration
		if err := parseDuration(v, &d); err != nil {
			return err
		}
		s.StopTimeout = int((d + time.Second - 1) / time.Second)
		return nil
	}},
	{"nginx-upstream", func(s *Settings) string { return s.NginxUpstream }, func(s *Settings, v string) error { s.NginxUpstream = v; return nil }},
	{"nginx-reload", func(s *Settings) string { return s.NginxReload }, func(s *Settings, v string) error {
		if v != "" {
			argv, err := SplitCommand(v)
			if err != nil {
				return err
			}
			// baton records the command and runs it later from wherever
			// watch, serve or the boot unit run (systemd's is /): a relative
			// program would then be another directory's file, run as root.
			if strings.Contains(argv[0], "/") && !filepath.IsAbs(argv[0]) {
				return fmt.Errorf("program %q is a relative path, which later deploys would resolve from another directory; give its absolute path (or a name on PATH, like nginx)", argv[0])
			}
		}
		s.NginxReload = v
		return nil
	}},
	{"nginx-container", func(s *Settings) string { return s.NginxContainer }, func(s *Settings, v string) error { s.NginxContainer = v; return nil }},
	{"relay", func(s *Settings) string { return boolStr(s.Relay) }, func(s *Settings, v string) error { return parseBool(v, &s.Relay) }},
	{"relay-port", func(s *Settings) string { return itoa0(s.RelayPort) }, func(s *Settings, v string) error { return parsePort(v, &s.RelayPort) }},
	{"relay-address", func(s *Settings) string { return s.RelayAddress }, func(s *Settings, v string) error {
		if v == "" {
			s.RelayAddress = ""
			return nil
		}
		// An IP literal only: the relay binds it in the host's network
		// namespace, and a name would be resolved there at every restart.
		ip, err := netip.ParseAddr(v)
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("want an IP address of this host, like 127.0.0.1 or 10.0.0.5")
		}
		s.RelayAddress = ip.String()
		return nil
	}},
	{"drain-signal", func(s *Settings) string { return s.DrainSignal }, func(s *Settings, v string) error { return parseSignal(v, &s.DrainSignal) }},
	{"pre-switch", func(s *Settings) string { return s.PreSwitch }, func(s *Settings, v string) error {
		if v != "" {
			if _, err := SplitCommand(v); err != nil {
				return err
			}
		}
		s.PreSwitch = v
		return nil
	}},
	{"accept-drift", func(s *Settings) string { return s.AcceptDrift }, func(s *Settings, v string) error { return parseDriftList(v, &s.AcceptDrift) }},
	{"bake", func(s *Settings) string {
		if s.Bake == 0 {
			return ""
		}
		return s.Bake.String()
	}, func(s *Settings, v string) error { return parseDuration(v, &s.Bake) }},
	{"bake-max-dial-errors", func(s *Settings) string { return itoa0(s.BakeMaxDialErrors) }, func(s *Settings, v string) error { return parseNonNegative(v, &s.BakeMaxDialErrors) }},
	{"bake-max-resets", func(s *Settings) string { return itoa0(s.BakeMaxResets) }, func(s *Settings, v string) error { return parseNonNegative(v, &s.BakeMaxResets) }},
	{"canary", func(s *Settings) string { return s.Canary.String() }, func(s *Settings, v string) error { return parseCanary(v, &s.Canary) }},
	{"kernel-path", func(s *Settings) string { return boolStr(s.KernelPath) }, func(s *Settings, v string) error { return parseBool(v, &s.KernelPath) }},
}

// SettingNames lists every setting, which is also its flag name and, after
// "baton.", its label key.
func SettingNames() []string {
	names := make([]string, len(settingDefs))
	for i, d := range settingDefs {
		names[i] = d.name
	}
	return names
}

// Labels returns the baton.<name> labels that mirror s on the container, for
// people reading docker inspect, leaving out settings at their default so
// the labels stay short. Commands are left out: they never come from a
// label, and a mirror of one would only look like an invitation.
func (s Settings) Labels() map[string]string {
	out := s.values()
	for name := range commandSettings {
		delete(out, settingLabelPrefix+name)
	}
	return out
}

// values is every non-default setting as a baton.<name> key.
func (s Settings) values() map[string]string {
	def := DefaultSettings()
	out := map[string]string{}
	for _, d := range settingDefs {
		if v := d.get(&s); v != d.get(&def) {
			out[settingLabelPrefix+d.name] = v
		}
	}
	return out
}

// redeployKey is String without the settings that change nothing on the
// container: the up-to-date rule compares these.
func (s Settings) redeployKey() string {
	for _, name := range hostOnlySettings {
		d, _ := findSetting(name)
		def := DefaultSettings()
		_ = d.set(&s, d.get(&def))
	}
	return s.String()
}

// String lists the non-default settings, for logs and dry runs.
func (s Settings) String() string {
	l := s.values()
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = strings.TrimPrefix(k, settingLabelPrefix) + "=" + l[k]
	}
	return strings.Join(parts, " ")
}

func (s Settings) validate() error {
	switch {
	case s.NginxReload != "" && s.NginxContainer != "":
		return classify(ErrInvalid, "--nginx-reload and --nginx-container both given; nginx runs either on the host (reload command) or in a container (HUP), pick one")
	case s.NginxUpstream == "" && (s.NginxReload != "" || s.NginxContainer != ""):
		return classify(ErrInvalid, "--nginx-reload/--nginx-container need --nginx-upstream FILE, the upstream file baton writes")
	case s.NginxUpstream != "" && s.NginxReload == "" && s.NginxContainer == "":
		return classify(ErrInvalid, "--nginx-upstream needs --nginx-reload CMD (nginx on the host) or --nginx-container NAME (nginx in a container) so nginx can be told to reload")
	case s.NginxUpstream != "" && !strings.HasPrefix(s.NginxUpstream, "/"):
		return classify(ErrInvalid, "--nginx-upstream %q must be an absolute path", s.NginxUpstream)
	case s.Bake > 0 && s.TrafficMode() == TrafficNone:
		return classify(ErrInvalid, "--bake needs traffic baton moves (--nginx-upstream, with the relay or nginx reload): without it the published ports pass to the new container only when the old one stops, so there is no old container to revert to; drop --bake or add --nginx-upstream")
	case s.Canary.Percent > 0 && s.TrafficMode() != TrafficRelay:
		return classify(ErrInvalid, "--canary needs baton's relay (--nginx-upstream without --relay=false): only the relay can split new connections between two containers; drop --canary or use the relay")
	case (s.Bake > 0 || s.Canary.Percent > 0) && slices.Contains(stoppingSignals, s.DrainSignal):
		return classify(ErrInvalid, "--drain-signal %s usually stops the old container, but --bake/--canary keep it to revert to; use a signal the app answers without exiting (SIGUSR1, SIGHUP, ...) or drop --bake/--canary", s.DrainSignal)
	case s.BakeMaxDialErrors > 0 && s.TrafficMode() != TrafficRelay:
		return classify(ErrInvalid, "--bake-max-dial-errors needs baton's relay, which counts the dials; drop it or use the relay")
	case s.BakeMaxResets > 0 && s.TrafficMode() != TrafficRelay:
		return classify(ErrInvalid, "--bake-max-resets needs baton's relay, which counts the resets; drop it or use the relay")
	case s.KernelPath && s.NginxContainer == "" && s.RelayAddress != "" && !kernelListenAddr(s.RelayAddress):
		return classify(ErrInvalid, "--kernel-path needs the relay on one IPv4 address of the host (loopback for an nginx there, or the address nginx on another machine reaches), but --relay-address is %s; give such an address or drop --kernel-path", s.RelayAddress)
	case s.KernelPath && !s.kernelPathFits():
		return classify(ErrInvalid, "--kernel-path needs baton's relay (--nginx-upstream with --nginx-reload or --nginx-container, the relay on): the kernel carries nginx's connections for the relay's address; drop --kernel-path")
	}
	return nil
}

// TrafficMode names how traffic moves for these settings.
func (s Settings) TrafficMode() TrafficMode {
	switch {
	case s.NginxUpstream == "":
		return TrafficNone
	case s.Relay:
		return TrafficRelay
	default:
		return TrafficNginx
	}
}

func findSetting(name string) (setting, bool) {
	for _, d := range settingDefs {
		if d.name == name {
			return d, true
		}
	}
	return setting{}, false
}

func parsePort(v string, dst *int) error {
	n, err := strconv.Atoi(strings.TrimSuffix(v, "/tcp"))
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("not a port number")
	}
	*dst = n
	return nil
}

func parseBool(v string, dst *bool) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	*dst = b
	return nil
}

func parseDuration(v string, dst *time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration like 30s or 2m")
	}
	*dst = d
	return nil
}

func parsePositiveDuration(v string, dst *time.Duration) error {
	if err := parseDuration(v, dst); err != nil {
		return err
	}
	if *dst == 0 {
		return fmt.Errorf("must be more than 0")
	}
	return nil
}

func parseNonNegative(v string, dst *int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("want a whole number, 0 or more")
	}
	*dst = n
	return nil
}

func parseDriftList(v string, dst *string) error {
	fields, err := dockerctl.ParseDriftFields(v)
	if err != nil {
		return err
	}
	*dst = strings.Join(fields, ",")
	return nil
}

// drainSignals are the signals --drain-signal may send: those apps use to
// hear "finish up and ask your clients to reconnect". KILL and STOP are not
// among them, since the old container must keep serving its drain.
var drainSignals = []string{"SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH"}

// stoppingSignals end most apps: the old container would be gone when a bake
// or canary reverts to it.
var stoppingSignals = []string{"SIGTERM", "SIGINT", "SIGQUIT"}

func parseSignal(v string, dst *string) error {
	if v == "" {
		*dst = ""
		return nil
	}
	name := strings.ToUpper(v)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if !slices.Contains(drainSignals, name) {
		return fmt.Errorf("want one of %s", strings.Join(drainSignals, ", "))
	}
	*dst = name
	return nil
}

// kernelPathFits reports whether the kernel path can serve these settings:
// a relay for an nginx container, or for an nginx on the host (the relay on
// a loopback address), or for an nginx elsewhere (the relay on an address
// of the host, --relay-address).
func (s Settings) kernelPathFits() bool {
	return s.TrafficMode() == TrafficRelay
}

// kernelListenAddr reports whether a relay address can be a kernel path's
// listen address: one IPv4 address (a DNAT catches one destination).
func kernelListenAddr(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

func itoa0(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func boolStr(b bool) string { return strconv.FormatBool(b) }
