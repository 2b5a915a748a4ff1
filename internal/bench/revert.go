package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// RevertConfig says what RunRevert measures: Runs deploys of a release
// that breaks under traffic, each reverted by a bake, under the load of
// Clients at Rate through nginx and baton's relay (nginx on the host).
type RevertConfig struct {
	Runs    int
	Clients int
	Rate    float64
	Warmup  time.Duration
	Out     io.Writer
}

// The broken release: its health stays OK, but 1 s after it first serves
// it resets every request's connection (demoapp RESET_AFTER), which only
// the relay's reset count catches.
const (
	revertResetAfter = "1s"
	revertBake       = "30s"
	revertMaxResets  = "3"
)

// RevertRun is one reverted deploy. Revert is from baton seeing the
// failure (its "rolling back" event) to traffic being back on the old
// container (its "traffic is back" event); Caught from the switch to the
// new container to that failure being seen (the release's own RESET_AFTER
// included). Of the requests sent from the deploy's start until the next
// one, Failed failed: ByApp of them were the broken release's own resets
// (nginx's 502 while it served, at most the Resets the relay counted of
// that container, which baton reports at the revert), the rest were lost
// on the way.
type RevertRun struct {
	N      int           `json:"n"`
	Total  int           `json:"total"`
	Failed int           `json:"failed"`
	ByApp  int           `json:"by_app"`
	Resets int           `json:"relay_resets"`
	Caught time.Duration `json:"caught_ns"`
	Revert time.Duration `json:"revert_ns"`
	Took   time.Duration `json:"took_ns"`
}

// RevertReport is RunRevert's result.
type RevertReport struct {
	Engine string      `json:"engine"`
	Runs   []RevertRun `json:"runs"`
}

// String is one line per run and a summary.
func (r *RevertReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nrevert (%s): a release resetting connections %s after it serves, --bake %s --bake-max-resets %s, relay with nginx on the host\n",
		r.Engine, revertResetAfter, revertBake, revertMaxResets)
	var reverts []time.Duration
	lost := 0
	for _, run := range r.Runs {
		fmt.Fprintf(&b, "run %d: failed %d/%d (%d reset by the broken release, which the relay counted %d resets of; %d lost), caught %s after the switch, revert %s, deploy %s\n",
			run.N, run.Failed, run.Total, run.ByApp, run.Resets, run.Failed-run.ByApp, fmtDuration(run.Caught), fmtDuration(run.Revert), fmtDuration(run.Took))
		reverts = append(reverts, run.Revert)
		lost += run.Failed - run.ByApp
	}
	if len(reverts) > 0 {
		p := loadgen.PercentilesOf(reverts)
		fmt.Fprintf(&b, "revert time p50 %s, max %s over %d runs; %d requests lost outside the broken release\n", fmtDuration(p.P50), fmtDuration(p.Max), len(reverts), lost)
	}
	return b.String()
}

// RunRevert measures how fast a bake reverts a release that breaks under
// load, and that nothing but the broken release's own answers fails.
func RunRevert(ctx context.Context, cfg RevertConfig) (*RevertReport, error) {
	if cfg.Runs <= 0 || cfg.Clients <= 0 || cfg.Rate <= 0 || cfg.Warmup <= 0 {
		return nil, errors.New("bench: revert needs positive runs, clients, rate and warm-up")
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	rep := &RevertReport{Engine: "unknown engine"}
	if e, err := engineOf(ctx); err == nil {
		rep.Engine = e.String()
	}
	ctx, cancel := context.WithTimeout(ctx, setupBudget+loadBound(cfg.Runs))
	defer cancel()
	env := testenv.NewEnv(ctx, "bench-revert", cfg.Out)
	runErr := env.Run(func(t testenv.TB) { measureReverts(t, cfg, rep) })
	return rep, errors.Join(runErr, env.Close())
}

func measureReverts(t testenv.TB, cfg RevertConfig, rep *RevertReport) {
	cli := testenv.Docker(t)
	name := testenv.UniqueName("bench-revert-")
	st := setUp(t, cli, Config{Warmup: cfg.Warmup}, ModeRelayHost, name)
	broken, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{
		Version: "broken", HealthCheck: true, HealthInterval: benchHealthInterval,
		Env: map[string]string{"WARMUP": cfg.Warmup.String(), "RESET_AFTER": revertResetAfter},
	})
	load, err := loadgen.Start(t.Context(), loadgen.Config{URL: st.nginx.URL() + "/", Clients: cfg.Clients, Rate: cfg.Rate, Duration: loadBound(cfg.Runs)})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer load.Stop()
	if err := WaitFlowing(t.Context(), load, cfg.Clients); err != nil {
		t.Fatalf("%v", err)
	}
	pause(t, settle)
	var spans []revertSpan
	for i := range cfg.Runs {
		args := append(append([]string{"--pull", "never", "--image", broken, "--bake", revertBake, "--bake-max-resets", revertMaxResets}, st.flags...), name)
		run, err := st.baton.Deploy(t.Context(), args...)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if run.ExitCode != 1 || run.Result == nil || !strings.Contains(run.Result.Error, "--bake-max-resets") {
			t.Fatalf("run %d: baton %v: exit %d, result %+v; want 1, reverted on its resets", i+1, args, run.ExitCode, run.Result)
		}
		seen, back, switched, ok := revertEvents(run)
		if !ok {
			t.Fatalf("run %d: baton's output lacks the switch, rolling-back or traffic-back event:\n%s", i+1, run.Stdout)
		}
		resets, ok := revertResets(run)
		if !ok {
			t.Fatalf("run %d: baton's output lacks the relay's counts of the reverted container:\n%s", i+1, run.Stdout)
		}
		rep.Runs = append(rep.Runs, RevertRun{N: i + 1, Resets: resets, Caught: seen.Sub(switched), Revert: back.Sub(seen), Took: run.Took()})
		spans = append(spans, revertSpan{run.Start, run.End})
		t.Logf("revert %d/%d: revert %s, caught %s after the switch", i+1, cfg.Runs, fmtDuration(back.Sub(seen)), fmtDuration(seen.Sub(switched)))
		pause(t, settle)
	}
	res := load.Stop()
	countRevertLoad(rep.Runs, spans, res.Samples())
}

// revertSpan is when one reverted deploy's command ran.
type revertSpan struct{ from, to time.Time }

// countRevertLoad gives each run the requests sent from its deploy's start
// until the next one's (the last run: until the load's end), and counts
// their failures. nginx answers a request whose upstream connection was
// reset 502, with no version: those sent while the deploy ran are the
// broken release's doing (ByApp), up to the resets the relay counted of it
// (Resets): more would be requests lost some other way, which they count
// as. Any other failure was lost on the way.
func countRevertLoad(runs []RevertRun, spans []revertSpan, samples []loadgen.Sample) {
	defer func() {
		for i := range runs {
			runs[i].ByApp = min(runs[i].ByApp, runs[i].Resets)
		}
	}()
	for _, s := range samples {
		for i, sp := range spans {
			if s.Start.Before(sp.from) || (i+1 < len(spans) && !s.Start.Before(spans[i+1].from)) {
				continue
			}
			r := &runs[i]
			r.Total++
			if !s.OK() {
				r.Failed++
				if s.Status == 502 && s.Version == "" && s.Start.Before(sp.to) {
					r.ByApp++
				}
			}
		}
	}
}

// revertCounted is baton's report, at a revert, of the relay's counts of
// the reverted container.
var revertCounted = regexp.MustCompile(`the relay counted (\d+) resets and (\d+) failed dials of it`)

// revertResets is the resets the relay counted of the reverted container,
// from baton's report at the revert.
func revertResets(run *DeployRun) (int, bool) {
	for _, e := range run.Events {
		if m := revertCounted.FindStringSubmatch(e.Message); m != nil {
			n, err := strconv.Atoi(m[1])
			return n, err == nil
		}
	}
	return 0, false
}

// revertEvents finds in a reverted deploy's events when traffic moved to
// the new container, when baton saw it fail and when traffic was back on
// the old one.
func revertEvents(run *DeployRun) (seen, back, switched time.Time, ok bool) {
	at := func(e Event) time.Time {
		if e.Time.IsZero() {
			return e.Received
		}
		return e.Time
	}
	switched, okSwitch := run.EventAt("switch")
	for _, e := range run.Events {
		switch {
		case seen.IsZero() && strings.HasPrefix(e.Message, "deploy failed, rolling back"):
			seen = at(e)
		case back.IsZero() && strings.HasPrefix(e.Message, "traffic is back on "):
			back = at(e)
		}
	}
	return seen, back, switched, okSwitch && !seen.IsZero() && !back.IsZero()
}
