package bench

import (
	"cmp"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/baton-sh/baton/internal/loadgen"
)

// Report is what a benchmark run measured.
type Report struct {
	Started time.Time     `json:"started"`
	Engine  Engine        `json:"engine"`
	Deploys int           `json:"deploys"` // asked for, per mode
	Clients int           `json:"clients"`
	Rate    float64       `json:"rate"` // per client; negative: closed loop
	Warmup  time.Duration `json:"warmup_ns"`
	Modes   []*ModeReport `json:"modes"`
}

// ModeReport is one mode's measurements. Error says why the mode could not
// run to its end; what it measured until then is kept.
type ModeReport struct {
	Mode    string `json:"mode"`
	Service string `json:"service,omitempty"` // the app container's name
	Error   string `json:"error,omitempty"`

	Deploys   []Deploy      `json:"deploy_runs"`
	DeployP50 time.Duration `json:"deploy_p50_ns"`
	DeployMax time.Duration `json:"deploy_max_ns"`

	Requests     int            `json:"requests"`
	Failed       int            `json:"failed"`
	FailedInside int            `json:"failed_inside_swaps"` // of Failed, those in progress during a swap window
	Failures     []ReasonCount  `json:"failure_reasons,omitempty"`
	Versions     map[string]int `json:"versions,omitempty"` // successful requests by the version that answered
	Inside       Latency        `json:"inside_swaps"`
	Outside      Latency        `json:"outside_swaps"`
	// Engine is the engine's own share of a deploy's time, measured beside
	// the deploys (baton's modes).
	Engine *EngineFloor `json:"engine_floor,omitempty"`
}

// Deploy is one measured deploy.
type Deploy struct {
	N        int       `json:"n"` // 1-based
	Version  string    `json:"version"`
	Image    string    `json:"image"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ExitCode int       `json:"exit_code"`
	// Duration is the baton command's wall time; for naive, from the stop to
	// the new container's being healthy.
	Duration time.Duration `json:"duration_ns"`
	// ToTraffic is from the command's start to the switch (stop-old in mode
	// none): when new connections begin to reach the new container.
	ToTraffic time.Duration `json:"to_traffic_ns,omitempty"`
	// BatonDuration is the deploy's duration as baton reports it.
	BatonDuration time.Duration `json:"baton_duration_ns,omitempty"`
	// Phases is where the deploy's time went, as baton reports it.
	Phases []PhaseTime `json:"phases,omitempty"`
	// Swap is when clients could notice the change: from the switch (stop-old
	// in mode none) to the command's end, padded; for naive, stop to healthy.
	Swap Window `json:"swap"`
}

// Window is a span of time.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

func (w Window) overlaps(s loadgen.Sample) bool {
	return !s.End().Before(w.Start) && !s.Start.After(w.End)
}

// Latency summarises request latencies (nearest rank), failed requests
// included.
type Latency struct {
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
	Count int           `json:"count"`
}

// ReasonCount is how many requests failed for one reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// maxReasons is how many failure reasons a report keeps.
const maxReasons = 5

// summarise fills in what the load and the deploys measured.
func (m *ModeReport) summarise(res *loadgen.Result) {
	windows := make([]loadgen.Window, 0, len(m.Deploys))
	for _, d := range m.Deploys {
		windows = append(windows, loadgen.Window{Start: d.Swap.Start, End: d.Swap.End})
	}
	m.Requests, m.Failed = res.Total(), res.Failed()
	m.FailedInside = 0
	for _, s := range res.Failures() {
		if slices.ContainsFunc(m.Deploys, func(d Deploy) bool { return d.Swap.overlaps(s) }) {
			m.FailedInside++
		}
	}
	m.Failures = FailureReasons(res, maxReasons)
	m.Versions = res.Versions()
	in, out := res.Latency(windows)
	m.Inside, m.Outside = latency(in), latency(out)
	durations := make([]time.Duration, 0, len(m.Deploys))
	for _, d := range m.Deploys {
		durations = append(durations, d.Duration)
	}
	if len(durations) > 0 {
		slices.Sort(durations)
		m.DeployP50 = durations[(len(durations)+1)/2-1]
		m.DeployMax = durations[len(durations)-1]
	}
}

func latency(p loadgen.Percentiles) Latency {
	return Latency{P50: p.P50, P99: p.P99, Max: p.Max, Count: p.Count}
}

// FailureReasons counts the failed requests by reason, most frequent first,
// and keeps the top ones (all with top <= 0).
func FailureReasons(res *loadgen.Result, top int) []ReasonCount {
	counts := map[string]int{}
	for _, s := range res.Failures() {
		counts[failureReason(s)]++
	}
	out := make([]ReasonCount, 0, len(counts))
	for _, r := range slices.Sorted(maps.Keys(counts)) {
		out = append(out, ReasonCount{Reason: r, Count: counts[r]})
	}
	slices.SortStableFunc(out, func(a, b ReasonCount) int { return cmp.Compare(b.Count, a.Count) })
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}

// urlErrorPrefix is how net/http prefixes a transport error: `Post "URL": `.
var urlErrorPrefix = regexp.MustCompile(`^[A-Za-z]+ "[^"]*": `)

// htmlTitle finds the title of an error page, such as nginx's.
var htmlTitle = regexp.MustCompile(`(?i)^(status \d+: ).*<title>([^<]*)</title>.*$`)

// localPort is a client's ephemeral port in a socket error: `tcp A:PORT->B`.
var localPort = regexp.MustCompile(`(tcp [^ ]*):\d+->`)

// failureReason makes a request's error groupable: the method first, the
// quoted URL (the same for every request) and the client's port dropped,
// whitespace collapsed, an error page reduced to its title, and anything
// else long cut short.
func failureReason(s loadgen.Sample) string {
	r := strings.Join(strings.Fields(s.Err), " ")
	r = urlErrorPrefix.ReplaceAllString(r, "")
	r = htmlTitle.ReplaceAllString(r, "${1}${2}")
	r = localPort.ReplaceAllString(r, "${1}:*->")
	const maxLen = 90
	if utf8.RuneCountInString(r) > maxLen {
		r = string([]rune(r)[:maxLen]) + "…"
	}
	return s.Method + " " + r
}
