package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/baton-sh/baton/healthcheck"
)

// bakeProbeFailures is how many --http-probe failures in a row during a
// bake or canary count as unhealthy: one can be a slow moment, three a
// second apart are not.
const bakeProbeFailures = 3

// bakeSignal is one thing seen of the new container during a bake or a
// canary: a Docker event, or a reading of its state and the relay's count.
type bakeSignal struct {
	Event      string // the event's action ("die", "health_status: unhealthy"); "" for a reading
	Running    bool   // reading: the container runs
	Restarting bool   // reading: the engine is restarting it
	Health     string // reading: Docker's health status, "" without a HEALTHCHECK
	DialErrors uint64 // failed dials the relay counted since the window began
	Resets     uint64 // connections the new container reset, counted by the relay since the window began
	ProbeFails int    // --http-probe failures in a row
}

// bakeLimits are the opt-in thresholds on what the relay counts of the new
// container during a bake or canary; 0 is off.
type bakeLimits struct {
	DialErrors int // --bake-max-dial-errors
	Resets     int // --bake-max-resets
}

// any reports whether a threshold is set, so the relay's counts are read.
func (l bakeLimits) any() bool { return l.DialErrors > 0 || l.Resets > 0 }

func (s Settings) bakeLimits() bakeLimits {
	return bakeLimits{DialErrors: s.BakeMaxDialErrors, Resets: s.BakeMaxResets}
}

// bakeVerdict is the pure rule of a bake and a canary: why the new container
// must be reverted, or "" while it may go on. It turns unhealthy, exits, is
// killed by the OOM killer, restarts or is removed; or the relay's count of
// failed dials to it, or of connections it reset, passes its limit (when
// set); or its probe failed bakeProbeFailures times in a row.
func bakeVerdict(s bakeSignal, lim bakeLimits) string {
	if status, ok := strings.CutPrefix(s.Event, string(events.ActionHealthStatus)); ok {
		if strings.TrimSpace(strings.TrimPrefix(status, ":")) == container.Unhealthy {
			return "turned unhealthy (Docker HEALTHCHECK)"
		}
		return ""
	}
	switch events.Action(s.Event) {
	case events.ActionDie:
		return "exited"
	case events.ActionOOM:
		return "was killed for want of memory"
	case events.ActionRestart:
		return "restarted"
	case events.ActionDestroy:
		return "was removed"
	case "":
		switch {
		case s.Restarting:
			return "is restarting"
		case !s.Running:
			return "is not running"
		case s.Health == container.Unhealthy:
			return "is unhealthy (Docker HEALTHCHECK)"
		}
	}
	if lim.DialErrors > 0 && s.DialErrors > uint64(lim.DialErrors) {
		return fmt.Sprintf("made the relay fail %d dials to it (more than --bake-max-dial-errors %d)", s.DialErrors, lim.DialErrors)
	}
	if lim.Resets > 0 && s.Resets > uint64(lim.Resets) {
		return fmt.Sprintf("reset %d connections the relay passed it (more than --bake-max-resets %d)", s.Resets, lim.Resets)
	}
	if s.ProbeFails >= bakeProbeFailures {
		return fmt.Sprintf("failed its --http-probe %d times in a row", s.ProbeFails)
	}
	return ""
}

// bake keeps the old container running, drained and out of rotation, for
// the bake window, and reverts traffic to it if the new container fails in
// that window. The old container's stop, the point of no return, comes
// after it.
func (r *run) bake(ctx context.Context) error {
	s := r.plan.settings
	r.enter(PhaseBake)
	if err := r.saveRecord(PhaseBake); err != nil {
		return err
	}
	r.event(PhaseBake, r.rec.NewName, "baking %s for %s: %s stays running out of rotation, and traffic goes back to it if %s",
		r.rec.NewName, s.Bake, r.svc.Name, watchedFor(s))
	return r.watchWindow(ctx, PhaseBake, s.Bake)
}

// watchWindow watches the new container for window and turns a failure
// into the error that reverts the deploy.
func (r *run) watchWindow(ctx context.Context, phase Phase, window time.Duration) error {
	t0 := time.Now()
	why, err := r.watchNew(ctx, window)
	switch {
	case err != nil && ctx.Err() != nil:
		return &PhaseError{Phase: phase, OldServing: true, Err: fmt.Errorf("deploy cancelled during the %s of %s", phase, r.rec.NewName)}
	case err != nil:
		// Without the engine's events the window cannot be watched: the
		// safe side is the old container, still running.
		r.reverted = true
		return &PhaseError{Phase: phase, OldServing: true, Err: fmt.Errorf("watching %s: %w; reverting, as the %s could not be watched", r.rec.NewName, err, phase)}
	case why != "":
		r.reverted = true
		return &PhaseError{Phase: phase, OldServing: true, Err: fmt.Errorf("new container %s %s %s into the %s", r.rec.NewName, why, time.Since(t0).Round(100*time.Millisecond), phase)}
	}
	r.event(phase, r.rec.NewName, "%s passed its %s of %s", r.rec.NewName, phase, window)
	return nil
}

func watchedFor(s Settings) string {
	what := "it turns unhealthy, exits or restarts"
	if s.HTTPProbe != "" {
		what = fmt.Sprintf("it turns unhealthy, fails GET %s %d times in a row, exits or restarts", s.HTTPProbe, bakeProbeFailures)
	}
	if s.BakeMaxDialErrors > 0 {
		what += fmt.Sprintf(", or the relay fails more than %d dials to it", s.BakeMaxDialErrors)
	}
	if s.BakeMaxResets > 0 {
		what += fmt.Sprintf(", or it resets more than %d connections", s.BakeMaxResets)
	}
	return what
}

// watchNew watches the new container for window, on the engine's events
// (health, die, oom, restart, destroy) rather than by polling its state.
// What has no event is read once a second: the relay's counts of dial
// errors and resets (when a threshold is set) and the --http-probe (when one is set). It
// returns why the container must be reverted, "" when the window passed,
// or an error when it could not watch (or ctx ended).
func (r *run) watchNew(ctx context.Context, window time.Duration) (string, error) {
	s := r.plan.settings
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	id := r.rec.NewID
	// Subscribe before inspecting, so no change between the two is lost;
	// Since replays what happened before the daemon registered us.
	now := time.Now()
	msgs, errs := r.d.Engine.Events(wctx, events.ListOptions{
		Since: fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond()),
		Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("container", id),
			filters.Arg("event", string(events.ActionHealthStatus)),
			filters.Arg("event", string(events.ActionDie)),
			filters.Arg("event", string(events.ActionOOM)),
			filters.Arg("event", string(events.ActionRestart)),
			filters.Arg("event", string(events.ActionDestroy)),
		),
	})
	c, err := r.d.Engine.ContainerInspect(wctx, id)
	if err != nil {
		return "", fmt.Errorf("inspecting %s: %w", r.rec.NewName, err)
	}
	reading := bakeSignal{Running: c.State != nil && c.State.Running, Restarting: c.State != nil && c.State.Restarting}
	if c.State != nil && c.State.Health != nil {
		reading.Health = c.State.Health.Status
	}
	if why := bakeVerdict(reading, s.bakeLimits()); why != "" {
		return why, nil
	}

	var cnt counter
	var base TargetCounts
	if s.bakeLimits().any() {
		if c, ok := r.traffic.(counter); ok {
			if base, err = c.Counts(wctx, r.newEP); err != nil {
				return "", fmt.Errorf("reading the relay's counts: %w", err)
			}
			cnt = c
		}
	}
	var probe healthcheck.Probe
	if s.HTTPProbe != "" && r.newEP.IP != "" {
		// Through the relay on a remote engine, as the warm-up probes go:
		// a remote container's address is not reachable from here (and may
		// be another container's here).
		probe = healthcheck.HTTPVia(r.newEP.Addr(), s.HTTPProbe, r.dialer())
	}
	var tick <-chan time.Time
	if cnt != nil || probe != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	end := time.NewTimer(window)
	defer end.Stop()
	probeFails := 0
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-end.C:
			return "", nil
		case m, ok := <-msgs:
			if !ok {
				return "", errors.New("docker events: stream closed")
			}
			if m.Actor.ID != "" && m.Actor.ID != id {
				continue // the filter matches names too
			}
			if why := bakeVerdict(bakeSignal{Event: string(m.Action)}, bakeLimits{}); why != "" {
				return why, nil
			}
		case err, ok := <-errs:
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			if !ok || err == nil {
				err = errors.New("stream closed")
			}
			return "", fmt.Errorf("docker events: %w", err)
		case <-tick:
			sig := bakeSignal{Running: true}
			if cnt != nil {
				now, err := cnt.Counts(wctx, r.newEP)
				if err != nil {
					return "", fmt.Errorf("reading the relay's counts: %w", err)
				}
				sig.DialErrors = now.DialErrors - base.DialErrors
				sig.Resets = now.Resets - base.Resets
			}
			if probe != nil {
				pctx, pcancel := context.WithTimeout(wctx, 2*time.Second)
				if err := probe.Check(pctx); err != nil {
					probeFails++
				} else {
					probeFails = 0
				}
				pcancel()
				sig.ProbeFails = probeFails
			}
			if why := bakeVerdict(sig, s.bakeLimits()); why != "" {
				return why, nil
			}
		}
	}
}
