// Package healthcheck decides, as early as the facts allow, whether a newly
// started container is healthy: it follows the container's Docker events
// (health_status, die, oom, restart, destroy) instead of polling, runs the
// caller's probes alongside, and on failure says why in one line, with the
// exit code, the last health check output, the last probe error and the tail
// of the container's logs.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

const (
	defaultInterval = 50 * time.Millisecond
	progressEvery   = time.Second
	// detailsTimeout bounds gathering the failure details (inspect and
	// logs), which runs after ctx may already be done. Generous: on a
	// loaded daemon these calls take seconds, and the log tail is what
	// tells the user why a container died.
	detailsTimeout = 15 * time.Second
	// exitLogWait: a container that just exited may not have its last
	// lines readable yet (the daemon's log copier lags the exit under
	// load: 1 s of retries was not enough at load average 30), so an
	// empty tail is read again every exitLogRetryGap for up to this long.
	// Only an exited container that logged nothing pays the whole wait.
	exitLogWait     = 6 * time.Second
	exitLogRetryGap = 250 * time.Millisecond
)

// Spec says what healthy means for one container.
type Spec struct {
	// Container is the ID (or name) of the container to watch. It may be
	// empty when only Probes are to be waited for; there is then nothing
	// to fail fast on.
	Container string
	// DockerHealth waits for the container's HEALTHCHECK to report
	// healthy (see HasDockerHealthcheck).
	DockerHealth bool
	// Probes must all pass, each once, after DockerHealth (if set) reported
	// healthy. They run from the start to report progress and errors early.
	Probes []Probe
	// EarlyCheck, with DockerHealth, is the container's own HEALTHCHECK
	// (see DockerHealthcheck) run by the caller every EarlyInterval until
	// Docker says healthy: its first pass counts as Docker's healthy.
	// Docker runs the first check one --interval after the start (30 s by
	// default), so a deploy that waited for Docker alone would wait that
	// long however soon the app is ready. A failed run counts for nothing:
	// Docker's unhealthy still ends the wait, as does an exit.
	EarlyCheck    Probe
	EarlyInterval time.Duration
	// Interval between attempts of one probe; 50ms when zero: a probe is one cheap request, and the time between the app being ready and the next attempt is added to every deploy (250ms cost 125ms on average).
	Interval time.Duration
	// Progress, if set, is called from Wait's goroutine on every change of
	// state and every second while waiting. It must not block.
	Progress func(Progress)
}

// Progress is a snapshot of a running Wait.
type Progress struct {
	Elapsed time.Duration
	// State is the container's state as last seen (created, running, ...),
	// "" without a Container.
	State string
	// DockerHealth is starting, healthy or unhealthy; "" when the container
	// has no HEALTHCHECK or no Container was given.
	DockerHealth   string
	Probes         int // number of probes
	ProbesPassed   int // probes that passed after DockerHealth was healthy
	LastProbeError string
}

// Wait returns nil once the container is healthy: running, Docker health (if
// Spec.DockerHealth) reported healthy, and every probe passed once after that.
//
// It returns at once, with a *Failure wrapping ErrExited or ErrUnhealthy,
// when the container exits, is OOM-killed, restarts, is removed or turns
// unhealthy. When ctx's deadline passes it returns a *Failure wrapping
// ErrTimeout; when ctx is cancelled it returns an error wrapping
// context.Canceled, so a caller can tell "too slow" from "told to stop".
func Wait(ctx context.Context, eng Engine, spec Spec) error {
	if spec.Container == "" && spec.DockerHealth {
		return errors.New("health wait: DockerHealth needs a Container")
	}
	if spec.Container != "" && eng == nil {
		return fmt.Errorf("container %s: health wait: no Docker engine", spec.Container)
	}
	if spec.Interval <= 0 {
		spec.Interval = defaultInterval
	}
	w := &waiter{
		eng:      eng,
		spec:     spec,
		start:    time.Now(),
		healthy:  make(chan struct{}),
		passed:   make([]bool, len(spec.Probes)),
		probeErr: make([]probeFailure, len(spec.Probes)),
	}
	if !spec.DockerHealth {
		w.markHealthy()
	}

	// Probes and the event stream stop when Wait returns; wg makes sure no
	// probe outlives it.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx2, cancel := context.WithCancel(ctx)
	defer cancel()

	var msgs <-chan events.Message
	var errs <-chan error
	if spec.Container != "" {
		// Subscribe before inspecting so no transition between the two is
		// lost. The daemon answers /events before it registers the
		// subscription, so Since replays what happened in that gap.
		msgs, errs = eng.Events(ctx2, events.ListOptions{
			Since:   unixNano(time.Now()),
			Filters: eventFilter(spec.Container),
		})
		info, err := eng.ContainerInspect(ctx2, spec.Container)
		switch {
		case err != nil && ctx.Err() != nil:
			return w.contextDone(ctx)
		case err != nil && cerrdefs.IsNotFound(err):
			w.removed = true
			return w.finish(ctx, &Failure{Err: ErrExited, Reason: "removed (no such container)"})
		case err != nil:
			return fmt.Errorf("container %s: inspect: %w", spec.Container, err)
		case info.ContainerJSONBase == nil || info.State == nil:
			return fmt.Errorf("container %s: inspect: no container state in the answer", spec.Container)
		}
		if f := w.observe(info); f != nil {
			return w.finish(ctx, f)
		}
		// State.Health only appears once the container runs; the config
		// says whether it ever will.
		if spec.DockerHealth && !HasDockerHealthcheck(info.Config) {
			return fmt.Errorf("container %s: %w (DockerHealth needs one in the image or the container config)", w.label(), ErrNoHealthcheck)
		}
	}

	early := make(chan string, 1)
	if spec.DockerHealth && spec.EarlyCheck != nil && spec.EarlyInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runEarly(ctx2, spec.EarlyCheck, spec.EarlyInterval, w.healthy, early)
		}()
	}

	results := make(chan probeResult)
	for i, p := range spec.Probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runProbe(ctx2, i, p, spec.Interval, w.healthy, results)
		}()
	}

	var heartbeat <-chan time.Time
	if spec.Progress != nil {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		heartbeat = t.C
	}
	w.report(true)
	for !w.done() {
		select {
		case <-ctx.Done():
			return w.contextDone(ctx)
		case m, ok := <-msgs:
			if !ok {
				if ctx.Err() != nil {
					return w.contextDone(ctx)
				}
				return fmt.Errorf("container %s: docker events: stream closed", w.label())
			}
			if f := w.event(m); f != nil {
				return w.finish(ctx, f)
			}
		case err, ok := <-errs:
			if ctx.Err() != nil {
				return w.contextDone(ctx)
			}
			if !ok || err == nil {
				return fmt.Errorf("container %s: docker events: stream closed", w.label())
			}
			return fmt.Errorf("container %s: docker events: %w", w.label(), err)
		case r := <-results:
			w.probeDone(r)
		case what := <-early:
			if w.health != container.Healthy {
				w.setHealth(container.Healthy, what)
			}
		case <-heartbeat:
			w.report(true)
			continue
		}
		w.report(false)
	}
	return nil
}

// eventFilter selects the events that change the verdict. kill is left
// out: a kill that matters is followed by die.
func eventFilter(ref string) filters.Args {
	return filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("container", ref),
		filters.Arg("event", "health_status"),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionOOM)),
		filters.Arg("event", string(events.ActionRestart)),
		filters.Arg("event", string(events.ActionDestroy)),
	)
}

func unixNano(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

type probeFailure struct {
	msg string
	at  time.Time
}

// waiter is the state of one Wait. Only Wait's goroutine touches it.
type waiter struct {
	eng   Engine
	spec  Spec
	start time.Time

	id, name string
	tty      bool
	state    string
	running  bool
	removed  bool

	health       string
	healthOutput string
	// healthy is closed once Docker health is healthy (at once without
	// DockerHealth); probes only count passes that began after it.
	healthy       chan struct{}
	healthyClosed bool

	passed   []bool
	nPassed  int
	probeErr []probeFailure

	last     Progress
	reported bool
}

func (w *waiter) markHealthy() {
	if !w.healthyClosed {
		w.healthyClosed = true
		close(w.healthy)
	}
}

func (w *waiter) done() bool {
	if w.spec.Container != "" && !w.running {
		return false
	}
	if w.spec.DockerHealth && w.health != container.Healthy {
		return false
	}
	return w.nPassed == len(w.spec.Probes)
}

func (w *waiter) setHealth(status string, output string) {
	w.health = status
	if output != "" {
		w.healthOutput = output
	}
	if status == container.Healthy {
		w.markHealthy()
	}
}

// observe takes in the inspect result that follows the subscription and
// returns a Failure if the container is already past saving.
func (w *waiter) observe(info container.InspectResponse) *Failure {
	w.id = info.ID
	w.name = strings.TrimPrefix(info.Name, "/")
	if info.Config != nil {
		w.tty = info.Config.Tty
	}
	st := info.State
	w.state = string(st.Status)
	if h := st.Health; h != nil {
		var out string
		if len(h.Log) > 0 && h.Log[len(h.Log)-1] != nil {
			out = h.Log[len(h.Log)-1].Output
		}
		w.setHealth(h.Status, out)
	}
	switch {
	case st.Status == container.StateExited || st.Status == container.StateDead:
		return &Failure{Err: ErrExited, Reason: "exited", ExitCode: st.ExitCode, HasExitCode: true, OOMKilled: st.OOMKilled}
	case st.Status == container.StateRemoving:
		return &Failure{Err: ErrExited, Reason: "being removed"}
	case st.Restarting:
		return &Failure{Err: ErrExited, Reason: "restarting after a crash", ExitCode: st.ExitCode, HasExitCode: true, OOMKilled: st.OOMKilled}
	case info.RestartCount > 0:
		// A restart policy brought it back before Wait looked: a crash
		// all the same, and the next one would come at a worse time.
		return &Failure{Err: ErrExited, Reason: fmt.Sprintf("restarted %d time(s) by its restart policy", info.RestartCount)}
	}
	w.running = st.Running
	if w.spec.DockerHealth && w.health == container.Unhealthy {
		return &Failure{Err: ErrUnhealthy, Reason: "docker health unhealthy"}
	}
	return nil
}

// event applies one Docker event and returns a Failure when it ends the wait.
func (w *waiter) event(m events.Message) *Failure {
	if m.Actor.ID != "" && w.id != "" && m.Actor.ID != w.id {
		// Same name, another container (the filter matches names too).
		return nil
	}
	action := string(m.Action)
	if rest, ok := strings.CutPrefix(action, string(events.ActionHealthStatus)); ok {
		status := strings.TrimSpace(strings.TrimPrefix(rest, ":"))
		w.setHealth(status, "")
		if status == container.Unhealthy && w.spec.DockerHealth {
			return &Failure{Err: ErrUnhealthy, Reason: "docker health unhealthy"}
		}
		return nil
	}
	switch events.Action(action) {
	case events.ActionStart:
		w.running = true
		w.state = string(container.StateRunning)
	case events.ActionDie:
		w.running = false
		w.state = string(container.StateExited)
		f := &Failure{Err: ErrExited, Reason: "exited"}
		if code, err := strconv.Atoi(m.Actor.Attributes["exitCode"]); err == nil {
			f.ExitCode, f.HasExitCode = code, true
		}
		return f
	case events.ActionOOM:
		return &Failure{Err: ErrExited, Reason: "killed: out of memory", OOMKilled: true}
	case events.ActionRestart:
		return &Failure{Err: ErrExited, Reason: "restarted"}
	case events.ActionDestroy:
		w.removed = true
		return &Failure{Err: ErrExited, Reason: "removed"}
	}
	return nil
}

func (w *waiter) probeDone(r probeResult) {
	if r.err != nil {
		w.probeErr[r.idx] = probeFailure{msg: r.err.Error(), at: time.Now()}
		return
	}
	w.probeErr[r.idx] = probeFailure{}
	if r.afterHealthy && !w.passed[r.idx] {
		w.passed[r.idx] = true
		w.nPassed++
	}
}

// lastProbeError is the most recent error of a probe that has not passed
// since.
func (w *waiter) lastProbeError() string {
	var last probeFailure
	for _, f := range w.probeErr {
		if f.msg != "" && !f.at.Before(last.at) {
			last = f
		}
	}
	return last.msg
}

func (w *waiter) report(force bool) {
	if w.spec.Progress == nil {
		return
	}
	p := Progress{
		State:          w.state,
		DockerHealth:   w.health,
		Probes:         len(w.spec.Probes),
		ProbesPassed:   w.nPassed,
		LastProbeError: w.lastProbeError(),
	}
	if !force && w.reported && p == w.last {
		return
	}
	w.last, w.reported = p, true
	p.Elapsed = time.Since(w.start)
	w.spec.Progress(p)
}

func (w *waiter) label() string {
	switch {
	case w.name != "":
		return w.name
	case len(w.spec.Container) == 64:
		return w.spec.Container[:12]
	}
	return w.spec.Container
}

// contextDone tells a deadline (a Failure with details) from a cancel (the
// caller gave up; it wants context.Canceled, not a diagnosis).
func (w *waiter) contextDone(ctx context.Context) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("container %s: health wait: %w", w.label(), ctx.Err())
	}
	var missing []string
	if w.spec.Container != "" && !w.running {
		missing = append(missing, "state "+orUnknown(w.state))
	}
	if w.spec.DockerHealth && w.health != container.Healthy {
		missing = append(missing, "docker health "+orUnknown(w.health))
	}
	if n := len(w.spec.Probes); w.nPassed < n {
		missing = append(missing, fmt.Sprintf("%d/%d probes passed", w.nPassed, n))
	}
	reason := "not healthy in time"
	if len(missing) > 0 {
		reason += " (" + strings.Join(missing, ", ") + ")"
	}
	return w.finish(ctx, &Failure{Err: ErrTimeout, Reason: reason})
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// finish completes f with what is known and what the daemon can still tell:
// a fresh inspect for the latest health output and exit code, and the log
// tail. ctx may be done by now, hence the detached context.
func (w *waiter) finish(ctx context.Context, f *Failure) *Failure {
	f.Container = w.label()
	f.Elapsed = time.Since(w.start)
	f.DockerHealth = w.health
	f.HealthOutput = w.healthOutput
	f.ProbeError = w.lastProbeError()
	if w.spec.Container != "" && !w.removed {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detailsTimeout)
		defer cancel()
		var errs []error
		if err := w.refresh(dctx, f); err != nil {
			errs = append(errs, err)
		}
		logs, err := tailLogs(dctx, w.eng, w.ref(), w.tty, logTailLines)
		for until := time.Now().Add(exitLogWait); f.Err == ErrExited && f.stopped && len(logs) == 0 && time.Now().Before(until) && dctx.Err() == nil; {
			select {
			case <-dctx.Done():
			case <-time.After(exitLogRetryGap):
				logs, err = tailLogs(dctx, w.eng, w.ref(), w.tty, logTailLines)
			}
		}
		f.Logs = logs
		if err != nil {
			errs = append(errs, err)
		}
		f.DetailsErr = errors.Join(errs...)
	}
	if f.Err == ErrExited {
		if f.HasExitCode {
			f.Reason += fmt.Sprintf(" (exit code %d)", f.ExitCode)
		}
		if f.OOMKilled && !strings.Contains(f.Reason, "out of memory") {
			f.Reason += " (out of memory)"
		}
	}
	return f
}

func (w *waiter) refresh(ctx context.Context, f *Failure) error {
	info, err := w.eng.ContainerInspect(ctx, w.ref())
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	if info.ContainerJSONBase == nil || info.State == nil {
		return nil
	}
	if info.Config != nil {
		w.tty = info.Config.Tty
	}
	st := info.State
	if h := st.Health; h != nil {
		f.DockerHealth = h.Status
		if len(h.Log) > 0 && h.Log[len(h.Log)-1] != nil {
			f.HealthOutput = h.Log[len(h.Log)-1].Output
		}
	}
	if f.Err == ErrExited {
		stopped := st.Status == container.StateExited || st.Status == container.StateDead || st.Restarting
		f.stopped = st.Status == container.StateExited || st.Status == container.StateDead
		if !f.HasExitCode && stopped {
			f.ExitCode, f.HasExitCode = st.ExitCode, true
		}
		f.OOMKilled = f.OOMKilled || st.OOMKilled
	}
	return nil
}

// ref is what to ask the daemon about: the ID once known, so a container
// that took over the name cannot be mistaken for this one.
func (w *waiter) ref() string {
	if w.id != "" {
		return w.id
	}
	return w.spec.Container
}
