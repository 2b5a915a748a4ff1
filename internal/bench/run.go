// Package bench measures what clients notice while a container is
// redeployed: each mode of baton (and, as the baseline, a plain docker stop,
// rm, run) gets a fresh world of its own — network, nginx, the demo app in
// two versions — and is deployed back and forth under steady keep-alive
// load through nginx. It reports failed requests, latency inside and outside
// the swap windows, and how long the deploys took. RunDataPath measures the
// data paths instead, with no deploy running (datapath.go).
package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// Run runs the benchmark, one mode after the other. A mode that cannot run
// to its end keeps what it measured and its Error in the report, the other
// modes still run, and the returned error names every failed mode.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now(), Deploys: cfg.Deploys, Clients: cfg.Clients, Rate: cfg.Rate, Warmup: cfg.Warmup}
	// Which engine the numbers belong to. Not knowing it spoils no
	// measurement: the report says "unknown engine".
	if e, err := engineOf(ctx); err != nil {
		fmt.Fprintf(cfg.Out, "bench: which engine: %v\n", err)
	} else {
		rep.Engine = e
	}
	var errs []error
	for _, mode := range cfg.Modes {
		if ctx.Err() != nil {
			m := &ModeReport{Mode: mode, Error: "not run: " + ctx.Err().Error()}
			rep.Modes = append(rep.Modes, m)
			errs = append(errs, fmt.Errorf("mode %s: %s", mode, m.Error))
			continue
		}
		m, err := runMode(ctx, cfg, mode)
		rep.Modes = append(rep.Modes, m)
		if err != nil {
			m.Error = err.Error()
			errs = append(errs, fmt.Errorf("mode %s: %w", mode, err))
		}
	}
	return rep, errors.Join(errs...)
}

// runMode measures one mode in an Env of its own, whose Close removes
// everything the mode made, whether it succeeded, failed or was cancelled.
func runMode(ctx context.Context, cfg Config, mode string) (*ModeReport, error) {
	m := &ModeReport{Mode: mode}
	ctx, cancel := context.WithTimeout(ctx, setupBudget+loadBound(cfg.Deploys))
	defer cancel()
	env := testenv.NewEnv(ctx, "bench-"+mode, cfg.Out)
	runErr := env.Run(func(t testenv.TB) { measure(t, cfg, mode, m) })
	// Close returns the failures of Run as well as its own.
	if err := env.Close(); err != nil {
		return m, err
	}
	return m, runErr
}

// measure sets the mode up, starts the load, deploys back and forth and
// summarises into m. Failures end it through t.Fatalf.
func measure(t testenv.TB, cfg Config, mode string, m *ModeReport) {
	logf := func(format string, args ...any) { t.Logf("%-15s "+format, append([]any{mode}, args...)...) }
	cli := testenv.Docker(t)
	logf("setting up")
	began := time.Now()
	m.Service = testenv.UniqueName("bench-web-")
	st := setUp(t, cli, cfg, mode, m.Service)
	logf("set up in %s; load through nginx at %s", fmtDuration(time.Since(began)), st.nginx.URL())

	load, err := loadgen.Start(t.Context(), loadgen.Config{
		URL: st.nginx.URL() + "/", Clients: cfg.Clients, Rate: cfg.loadRate(), Duration: loadBound(cfg.Deploys),
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer load.Stop() // on a Fatalf; Stop may be called again
	stop := func() *loadgen.Result {
		res := load.Stop()
		m.summarise(res)
		return res
	}
	if err := WaitFlowing(t.Context(), load, cfg.Clients); err != nil {
		stop()
		t.Fatalf("%v", err)
	}
	pause(t, settle)
	var last string
	for i := range cfg.Deploys {
		// A runs at first: deploy B, A, B, …
		last = st.app.Versions[(i+1)%len(st.app.Versions)]
		d, err := st.deploy(t, i+1, last)
		if !d.Start.IsZero() {
			m.Deploys = append(m.Deploys, d)
		}
		if err != nil {
			stop()
			t.Fatalf("deploy %d/%d (to %s): %v", i+1, cfg.Deploys, last, err)
		}
		logf("deploy %d/%d -> %s: %s", i+1, cfg.Deploys, last, fmtDuration(d.Duration))
		pause(t, settle)
	}
	if st.baton != nil {
		// Under the same load, with no deploy running: what the engine
		// alone takes to start the app until it is ready, and to stop it.
		floor, err := measureEngineFloor(t, cli, st.app.Images[last], st.app.Network, st.app.Name)
		if err != nil {
			stop()
			t.Fatalf("%v", err)
		}
		m.Engine = &floor
		logf("engine alone: start %s, start to ready %s, stop %s", fmtDuration(floor.Start), fmtDuration(floor.StartToReady), fmtDuration(floor.Stop))
	}
	res := stop()
	logf("load: %s", res.Summary())
	if res.Reason != "stopped" {
		t.Fatalf("the load ended before the deploys did (%s)", res.Reason)
	}
	if m.Versions[last] == 0 {
		t.Fatalf("no request was answered by version %s: the deploys did not move traffic (versions %v)", last, m.Versions)
	}
}

// WaitFlowing waits until n requests of the load have completed, so that
// deploys start under load. loadgen has no event for it: a short poll.
func WaitFlowing(ctx context.Context, l *loadgen.Load, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for l.Completed() < n {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("load: only %d requests completed in 15s", l.Completed())
			}
			return fmt.Errorf("load: waiting for requests: %w", ctx.Err())
		case <-l.Done():
			return fmt.Errorf("load: ended after %d requests", l.Completed())
		case <-tick.C:
		}
	}
	return nil
}

// pause lets the load run for d: time between deploys is part of what the
// benchmark measures (latency outside the swaps), not a wait for an event.
func pause(t testenv.TB, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.Context().Done():
		t.Fatalf("interrupted: %v", t.Context().Err())
	case <-timer.C:
	}
}
