package healthcheck

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
)

func asFailure(t *testing.T, err error) *Failure {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T) is not a *Failure", err, err)
	}
	if strings.Contains(f.Error(), "\n") {
		t.Errorf("Error() is not one line: %q", f.Error())
	}
	return f
}

func TestWaitHealthyViaEvent(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Starting)
	var mu sync.Mutex
	var seen []string
	done := startWait(t.Context(), eng, Spec{
		Container:    fakeID,
		DockerHealth: true,
		Progress: func(p Progress) {
			mu.Lock()
			seen = append(seen, p.DockerHealth)
			mu.Unlock()
		},
	})
	awaitInspect(t, eng)
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v while the container was starting", err)
	default:
	}
	eng.push(events.ActionHealthStatusHealthy, nil)
	if err := awaitResult(t, done); err != nil {
		t.Fatalf("Wait: %v", err)
	}

	if got := eng.callLog(); !strings.HasPrefix(got, "events,inspect") {
		t.Errorf("calls = %s, want the subscription before the inspect", got)
	}
	opts := eng.eventOpts
	if opts.Since == "" {
		t.Error("events subscription has no Since: events between subscribe and inspect could be lost")
	}
	for _, kv := range [][2]string{{"type", "container"}, {"container", fakeID}, {"event", "health_status"}, {"event", "die"}, {"event", "oom"}, {"event", "restart"}, {"event", "destroy"}} {
		if !opts.Filters.ExactMatch(kv[0], kv[1]) {
			t.Errorf("events filter %v lacks %s=%s", opts.Filters, kv[0], kv[1])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 || seen[0] != container.Starting || seen[len(seen)-1] != container.Healthy {
		t.Errorf("progress health states = %v, want starting ... healthy", seen)
	}
}

func TestWaitAlreadyHealthyAtInspect(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Healthy)
	start := time.Now()
	if err := Wait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true}); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Wait took %s for a container already healthy", d)
	}
}

func TestWaitUnhealthyEvent(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Starting)
	eng.setLogs(t, "booting", "listening on :8080")
	done := startWait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true})
	awaitInspect(t, eng)
	eng.setState(func(st *container.State, _ *container.InspectResponse) {
		st.Health.Status = container.Unhealthy
		st.Health.Log = []*container.HealthcheckResult{
			{ExitCode: 1, Output: "503 warming up\n"},
			{ExitCode: 1, Output: "503 never healthy (MODE=never-healthy)\n"},
		}
	})
	eng.push(events.ActionHealthStatusUnhealthy, nil)
	err := awaitResult(t, done)
	if !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("err = %v, want ErrUnhealthy", err)
	}
	f := asFailure(t, err)
	if !strings.Contains(err.Error(), "never healthy (MODE=never-healthy)") {
		t.Errorf("error lacks the last health check output: %s", err)
	}
	if !strings.Contains(err.Error(), "container web-1:") {
		t.Errorf("error does not name the container: %s", err)
	}
	if strings.Contains(err.Error(), "warming up") {
		t.Errorf("error shows an older health check than the last: %s", err)
	}
	if want := []string{"booting", "listening on :8080"}; strings.Join(f.Logs, "|") != strings.Join(want, "|") {
		t.Errorf("logs = %q, want %q", f.Logs, want)
	}
}

func TestWaitDieReportsExitCodeAndLogs(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Starting)
	eng.setLogs(t, "demoapp starting", "panic: config missing", "goroutine 1 [running]")
	done := startWait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true})
	awaitInspect(t, eng)
	eng.setState(func(st *container.State, _ *container.InspectResponse) {
		st.Status, st.Running, st.ExitCode = container.StateExited, false, 3
	})
	eng.push(events.ActionDie, map[string]string{"exitCode": "3"})
	err := awaitResult(t, done)
	if !errors.Is(err, ErrExited) || errors.Is(err, ErrUnhealthy) || errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrExited only", err)
	}
	f := asFailure(t, err)
	if !f.HasExitCode || f.ExitCode != 3 {
		t.Errorf("exit code = %d (known %v), want 3", f.ExitCode, f.HasExitCode)
	}
	msg := err.Error()
	for _, want := range []string{"container web-1: exited (exit code 3)", "logs: demoapp starting | panic: config missing | goroutine 1 [running]"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if eng.logsOpts.Tail != "10" || !eng.logsOpts.ShowStdout || !eng.logsOpts.ShowStderr {
		t.Errorf("logs options = %+v, want the last 10 lines of stdout and stderr", eng.logsOpts)
	}
}

func TestWaitIgnoresEventsOfAnotherContainer(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Starting)
	done := startWait(t.Context(), eng, Spec{Container: "web-1", DockerHealth: true})
	awaitInspect(t, eng)
	// An older container that had the name dies; this one is fine.
	eng.pushFor(strings.Repeat("f", 64), events.ActionDie, map[string]string{"exitCode": "137"})
	eng.push(events.ActionHealthStatusHealthy, nil)
	if err := awaitResult(t, done); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestWaitRestartIsAnExit(t *testing.T) {
	t.Run("restart event", func(t *testing.T) {
		eng := newFakeEngine(container.StateRunning, container.Starting)
		done := startWait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true})
		awaitInspect(t, eng)
		eng.push(events.ActionRestart, nil)
		if err := awaitResult(t, done); !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "restarted") {
			t.Fatalf("err = %v, want ErrExited saying restarted", err)
		}
	})
	t.Run("restart count at inspect", func(t *testing.T) {
		// A restart policy revived the crashed container before Wait looked.
		eng := newFakeEngine(container.StateRunning, container.Starting)
		eng.setState(func(_ *container.State, info *container.InspectResponse) { info.RestartCount = 2 })
		err := Wait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true})
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "restarted 2 time(s)") {
			t.Fatalf("err = %v, want ErrExited saying restarted 2 times", err)
		}
	})
	t.Run("restarting at inspect", func(t *testing.T) {
		eng := newFakeEngine(container.StateRestarting, container.Starting)
		eng.setState(func(st *container.State, _ *container.InspectResponse) { st.Restarting, st.ExitCode = true, 1 })
		err := Wait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true})
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exit code 1") {
			t.Fatalf("err = %v, want ErrExited with exit code 1", err)
		}
	})
	t.Run("exited at inspect", func(t *testing.T) {
		eng := newFakeEngine(container.StateExited, "")
		eng.setState(func(st *container.State, _ *container.InspectResponse) { st.ExitCode, st.OOMKilled = 137, true })
		err := Wait(t.Context(), eng, Spec{Container: fakeID})
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exit code 137") || !strings.Contains(err.Error(), "out of memory") {
			t.Fatalf("err = %v, want ErrExited with exit code 137, out of memory", err)
		}
	})
	t.Run("oom event", func(t *testing.T) {
		eng := newFakeEngine(container.StateRunning, "")
		done := startWait(t.Context(), eng, Spec{Container: fakeID, Probes: []Probe{failingProbe{}}})
		awaitInspect(t, eng)
		eng.push(events.ActionOOM, nil)
		if err := awaitResult(t, done); !errors.Is(err, ErrExited) || !asFailure(t, err).OOMKilled {
			t.Fatalf("err = %v, want ErrExited, OOM-killed", err)
		}
	})
	t.Run("destroyed", func(t *testing.T) {
		eng := newFakeEngine(container.StateRunning, container.Starting)
		done := startWait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true})
		awaitInspect(t, eng)
		eng.push(events.ActionDestroy, nil)
		if err := awaitResult(t, done); !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "removed") {
			t.Fatalf("err = %v, want ErrExited saying removed", err)
		}
	})
	t.Run("gone before inspect", func(t *testing.T) {
		eng := newFakeEngine(container.StateRunning, "")
		err := Wait(t.Context(), eng, Spec{Container: "web-2"})
		if !errors.Is(err, ErrExited) {
			t.Fatalf("err = %v, want ErrExited for a container that no longer exists", err)
		}
	})
}

func TestWaitNoHealthcheck(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, "")
	err := Wait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true})
	if !errors.Is(err, ErrNoHealthcheck) {
		t.Fatalf("err = %v, want ErrNoHealthcheck", err)
	}
}

type failingProbe struct{}

func (failingProbe) Check(context.Context) error {
	return errors.New("GET http://x/healthz: 503 Service Unavailable: warming up")
}
func (failingProbe) String() string { return "failing" }

func TestWaitTimeout(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Starting)
	eng.setState(func(st *container.State, _ *container.InspectResponse) {
		st.Health.Log = []*container.HealthcheckResult{{ExitCode: 1, Output: "503 still warming\n"}}
	})
	eng.setLogs(t, "warming the cache", "still warming")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Wait(ctx, eng, Spec{Container: fakeID, DockerHealth: true, Probes: []Probe{failingProbe{}}, Interval: 20 * time.Millisecond})
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("Wait returned after %s with a 300ms deadline", d)
	}
	if !errors.Is(err, ErrTimeout) || errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	f := asFailure(t, err)
	msg := err.Error()
	for _, want := range []string{"not healthy in time (docker health starting, 0/1 probes passed)", "last health check: 503 still warming", "last probe error: GET http://x/healthz: 503 Service Unavailable: warming up", "logs: warming the cache | still warming"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if eng.logsCtxErr != nil {
		t.Errorf("logs were fetched with a done context (%v): they must use a fresh one", eng.logsCtxErr)
	}
	if f.DetailsErr != nil {
		t.Errorf("details error: %v", f.DetailsErr)
	}
}

func TestWaitCancelIsNotTimeout(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Starting)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	done := startWait(ctx, eng, Spec{Container: fakeID, DockerHealth: true})
	awaitInspect(t, eng)
	cancel()
	err := awaitResult(t, done)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var f *Failure
	if errors.Is(err, ErrTimeout) || errors.As(err, &f) {
		t.Fatalf("err = %v: a cancel must not look like a timeout or a failure", err)
	}
}

func TestWaitProbesOnlyHTTP(t *testing.T) {
	const failures = 3
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) <= failures {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	var lastErr atomic.Value
	err := Wait(t.Context(), nil, Spec{
		Probes:   []Probe{HTTP(addr, "/healthz")},
		Interval: 10 * time.Millisecond,
		Progress: func(p Progress) {
			if p.LastProbeError != "" {
				lastErr.Store(p.LastProbeError)
			}
		},
	})
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got := calls.Load(); got != failures+1 {
		t.Errorf("server saw %d requests, want %d (probe stops once it passed)", got, failures+1)
	}
	want := "GET " + srv.URL + "/healthz: 503 Service Unavailable: warming up"
	if got, _ := lastErr.Load().(string); got != want {
		t.Errorf("progress probe error = %q, want %q", got, want)
	}
}

func TestWaitProbeMustPassAfterDockerHealthy(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Starting)
	var calls atomic.Int32
	first := make(chan struct{})
	// Passes early, then fails twice once Docker says healthy: only a pass
	// after healthy may end the wait.
	probe := probeFunc(func(context.Context) error {
		switch calls.Add(1) {
		case 1:
			close(first)
			return nil
		case 2, 3:
			return errors.New("GET http://x/: 502 Bad Gateway")
		}
		return nil
	})
	done := startWait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true, Probes: []Probe{probe}, Interval: 10 * time.Millisecond})
	<-first
	time.Sleep(100 * time.Millisecond) // a wrong Wait would return or probe again now
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v before Docker health was healthy", err)
	default:
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("a passing probe ran %d times before Docker health turned healthy, want it to idle", n)
	}
	eng.push(events.ActionHealthStatusHealthy, nil)
	if err := awaitResult(t, done); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("probe ran %d times, want 4 (early pass, two failures, the pass that counts)", n)
	}
}

type probeFunc func(context.Context) error

func (f probeFunc) Check(ctx context.Context) error { return f(ctx) }
func (probeFunc) String() string                    { return "func" }

func TestWaitTCPListenerAppearsLate(t *testing.T) {
	// Reserve a port, free it, and open it again later: connects are
	// refused until then.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}

	sawRefused := make(chan struct{})
	var once sync.Once
	done := startWait(t.Context(), nil, Spec{
		Probes:   []Probe{TCP(addr)},
		Interval: 20 * time.Millisecond,
		Progress: func(p Progress) {
			if strings.Contains(p.LastProbeError, "connection refused") && strings.Contains(p.LastProbeError, addr) {
				once.Do(func() { close(sawRefused) })
			}
		},
	})
	select {
	case <-sawRefused:
	case err := <-done:
		t.Fatalf("Wait returned %v before anything listened on %s", err, addr)
	case <-time.After(5 * time.Second):
		t.Fatal("probe never reported connection refused")
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	defer ln.Close()
	if err := awaitResult(t, done); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestFailureErrorIsOneLine(t *testing.T) {
	f := &Failure{
		Err: ErrUnhealthy, Container: "web-1", Reason: "docker health unhealthy", Elapsed: 3200 * time.Millisecond,
		HealthOutput: "503\nnever healthy\n", ProbeError: "GET http://a/b: 503", Logs: []string{" one ", "two\r", ""},
	}
	want := "container web-1: docker health unhealthy after 3.2s; last health check: 503 never healthy; last probe error: GET http://a/b: 503; logs: one | two"
	if got := f.Error(); got != want {
		t.Errorf("Error() =\n%q, want\n%q", got, want)
	}
	if !errors.Is(f, ErrUnhealthy) {
		t.Error("Failure does not unwrap to its sentinel")
	}
	if d := f.Detail(); !strings.Contains(d, "\n  503\n  never healthy\n") {
		t.Errorf("Detail() lost the health output's lines:\n%s", d)
	}
}

// A loaded daemon's log copier can lag an exit by seconds: the tail of an
// exited container that reads empty is read again until its lines arrive.
// With the earlier second of retries this failed (no log line in the error).
func TestWaitDieWaitsForLaggingLogs(t *testing.T) {
	eng := newFakeEngine(container.StateRunning, container.Starting)
	done := startWait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true})
	awaitInspect(t, eng)
	eng.setState(func(st *container.State, _ *container.InspectResponse) {
		st.Status, st.Running, st.ExitCode = container.StateExited, false, 1
	})
	eng.push(events.ActionDie, map[string]string{"exitCode": "1"})
	time.AfterFunc(2*time.Second, func() { eng.setLogs(t, "crashing at start") })
	err := awaitResult(t, done)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "logs: crashing at start") {
		t.Fatalf("err = %v, want ErrExited with the log line that arrived late", err)
	}
}

// Docker runs a HEALTHCHECK first one interval after the start (30 s by
// default): the caller's run of it (EarlyCheck) ends the wait at its first
// pass, with Docker still "starting"; failed runs count for nothing, so a
// check that never passes leaves the wait to Docker (the control), and
// Docker's unhealthy still ends it while the early runs fail.
func TestWaitEarlyCheck(t *testing.T) {
	t.Run("first pass counts as healthy", func(t *testing.T) {
		eng := newFakeEngine(container.StateRunning, container.Starting)
		var calls atomic.Int32
		check := probeFunc(func(context.Context) error {
			if calls.Add(1) < 3 {
				return errors.New("HEALTHCHECK exited 1")
			}
			return nil
		})
		var after []Probe
		var probeCalls atomic.Int32
		after = append(after, probeFunc(func(context.Context) error { probeCalls.Add(1); return nil }))
		start := time.Now()
		err := Wait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true, EarlyCheck: check, EarlyInterval: 20 * time.Millisecond, Probes: after, Interval: 10 * time.Millisecond})
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if n := calls.Load(); n != 3 {
			t.Errorf("the check ran %d times, want 3 (two failures, the pass)", n)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Wait took %s", d)
		}
		if probeCalls.Load() == 0 {
			t.Error("the probes did not run after the early pass")
		}
	})
	t.Run("never passing leaves it to docker", func(t *testing.T) {
		eng := newFakeEngine(container.StateRunning, container.Starting)
		var calls atomic.Int32
		check := probeFunc(func(context.Context) error { calls.Add(1); return errors.New("HEALTHCHECK exited 1") })
		done := startWait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true, EarlyCheck: check, EarlyInterval: 10 * time.Millisecond})
		awaitInspect(t, eng)
		time.Sleep(150 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Wait returned %v with every early run failing and Docker starting", err)
		default:
		}
		if calls.Load() < 3 {
			t.Errorf("the check ran %d times in 150 ms at a 10 ms interval", calls.Load())
		}
		eng.push(events.ActionHealthStatusHealthy, nil)
		if err := awaitResult(t, done); err != nil {
			t.Fatalf("Wait after Docker's healthy: %v", err)
		}
	})
	t.Run("docker's unhealthy still fails", func(t *testing.T) {
		eng := newFakeEngine(container.StateRunning, container.Starting)
		check := probeFunc(func(context.Context) error { return errors.New("HEALTHCHECK exited 1") })
		done := startWait(t.Context(), eng, Spec{Container: fakeID, DockerHealth: true, EarlyCheck: check, EarlyInterval: 10 * time.Millisecond})
		awaitInspect(t, eng)
		eng.push(events.ActionHealthStatusUnhealthy, nil)
		if err := awaitResult(t, done); !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("err = %v, want ErrUnhealthy", err)
		}
	})
}
