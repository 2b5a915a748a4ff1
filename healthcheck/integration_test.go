package healthcheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/testenv"
)

const testLabel = "baton.test"

// dockerEnv is one Docker client and one demoapp image shared by the
// integration subtests, which run in parallel.
type dockerEnv struct {
	cli    *client.Client
	image  string
	prefix string
}

func newDockerEnv(t *testing.T) *dockerEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against the Docker Engine; skipped with -short")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() {
		if err := cli.Close(); err != nil {
			t.Errorf("docker client close: %v", err)
		}
	})
	if _, err := cli.Ping(t.Context()); err != nil {
		t.Fatalf("docker daemon: %v", err)
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	env := &dockerEnv{cli: cli, prefix: "baton-test-hc-" + hex.EncodeToString(rnd[:])}
	env.buildImage(t)
	return env
}

// buildImage makes the FROM scratch demo image with testenv, which imports
// it: a classic build here would look through every parentless image on the
// engine for its cache, and fail when another package removes one of them
// meanwhile ("unable to find image").
func (e *dockerEnv) buildImage(t *testing.T) {
	t.Helper()
	e.image, _ = testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{
		Repo: e.prefix, Tag: "latest",
		HealthCheck: true, HealthInterval: time.Second, HealthTimeout: 2 * time.Second,
		HealthStartPeriod: time.Millisecond, // as good as none
		HealthRetries:     3,
	})
}

// create makes a labelled container of the demo image, removed when the test
// ends. It is not started.
func (e *dockerEnv) create(t *testing.T, name string, env []string, restart container.RestartPolicyMode) string {
	t.Helper()
	resp, err := e.cli.ContainerCreate(t.Context(),
		&container.Config{Image: e.image, Env: env, Labels: map[string]string{testLabel: "1"}},
		&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: restart}},
		nil, nil, e.prefix+"-"+name)
	if err != nil {
		t.Fatalf("container %s: create: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("container %s: remove: %v", name, err)
		}
	})
	return resp.ID
}

func (e *dockerEnv) start(t *testing.T, id string) {
	t.Helper()
	if err := e.cli.ContainerStart(t.Context(), id, container.StartOptions{}); err != nil {
		t.Fatalf("container %s: start: %v", id[:12], err)
	}
}

// bridgeAddr is the container's app address on the default bridge,
// reachable from the host without publishing a port.
func (e *dockerEnv) bridgeAddr(t *testing.T, id string) string {
	t.Helper()
	info, err := e.cli.ContainerInspect(t.Context(), id)
	if err != nil {
		t.Fatalf("container %s: inspect: %v", id[:12], err)
	}
	if ep := info.NetworkSettings.Networks["bridge"]; ep != nil && ep.IPAddress != "" {
		return ep.IPAddress + ":8080"
	}
	t.Fatalf("container %s: no address on the default bridge (state %s)", id[:12], info.State.Status)
	return ""
}

func TestWaitDocker(t *testing.T) {
	env := newDockerEnv(t)

	t.Run("healthy after warm-up", func(t *testing.T) {
		t.Parallel()
		id := env.create(t, "healthy", []string{"WARMUP=1s"}, "")
		// Before the start: the app's warm-up clock starts before
		// ContainerStart returns, later on a busy machine.
		started := time.Now()
		env.start(t, id)
		info, err := env.cli.ContainerInspect(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !HasDockerHealthcheck(info.Config) {
			t.Fatalf("demo image has no HEALTHCHECK in %+v", info.Config.Healthcheck)
		}
		addr := env.bridgeAddr(t, id)

		var mu sync.Mutex
		var states []string
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		err = Wait(ctx, env.cli, Spec{
			Container:    id,
			DockerHealth: true,
			Probes:       []Probe{HTTP(addr, "/healthz")},
			Progress: func(p Progress) {
				mu.Lock()
				defer mu.Unlock()
				if len(states) == 0 || states[len(states)-1] != p.DockerHealth {
					states = append(states, p.DockerHealth)
				}
			},
		})
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if d := time.Since(started); d < time.Second {
			t.Errorf("healthy after %s, before the app's 1s warm-up ended", d)
		}
		info, err = env.cli.ContainerInspect(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !info.State.Running || info.State.Health == nil || info.State.Health.Status != container.Healthy {
			t.Errorf("after Wait the container is %s, health %+v; want running and healthy", info.State.Status, info.State.Health)
		}
		mu.Lock()
		if len(states) < 2 || states[0] != container.Starting || states[len(states)-1] != container.Healthy {
			t.Errorf("docker health went %v, want starting ... healthy", states)
		}
		mu.Unlock()
		if err := WarmUp(t.Context(), "http://"+addr+"/", 5); err != nil {
			t.Errorf("WarmUp: %v", err)
		}
	})

	t.Run("crash at start", func(t *testing.T) {
		t.Parallel()
		// Start only once Wait is watching, so the die reaches it as an
		// event rather than as a state at inspect.
		id := env.create(t, "crash", []string{"MODE=crash"}, "")
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		watching := make(chan struct{})
		var once sync.Once
		begin := time.Now()
		done := startWait(ctx, env.cli, Spec{
			Container:    id,
			DockerHealth: true,
			Progress:     func(Progress) { once.Do(func() { close(watching) }) },
		})
		select {
		case <-watching:
		case err := <-done:
			t.Fatalf("Wait returned %v before the container started", err)
		}
		env.start(t, id)
		err := <-done
		if d := time.Since(begin); d > 10*time.Second {
			t.Errorf("Wait took %s to notice a crash at start", d)
		}
		if !errors.Is(err, ErrExited) {
			t.Fatalf("err = %v, want ErrExited", err)
		}
		f := asFailure(t, err)
		if !f.HasExitCode || f.ExitCode != 1 {
			t.Errorf("exit code = %d (known %v), want 1", f.ExitCode, f.HasExitCode)
		}
		if !strings.Contains(err.Error(), "crashing at start") {
			t.Errorf("error lacks the app's last log line: %s", err)
		}
		t.Logf("error: %s", err)
	})

	t.Run("crash hidden by restart policy", func(t *testing.T) {
		t.Parallel()
		id := env.create(t, "crashloop", []string{"MODE=crash"}, container.RestartPolicyAlways)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		// Call Wait only after the policy restarted the crashed app, when
		// the container may look "running" again: the crash must still show.
		subCtx, unsubscribe := context.WithCancel(ctx)
		msgs, errs := env.cli.Events(subCtx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", "container"), filters.Arg("container", id), filters.Arg("event", "start"))})
		env.start(t, id)
		for starts := 0; starts < 2; {
			select {
			case <-msgs:
				starts++
			case err := <-errs:
				t.Fatalf("events: %v", err)
			}
		}
		unsubscribe()
		begin := time.Now()
		err := Wait(ctx, env.cli, Spec{Container: id, DockerHealth: true})
		if d := time.Since(begin); d > 10*time.Second {
			t.Errorf("Wait took %s to notice a crash loop", d)
		}
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "crashing at start") {
			t.Fatalf("err = %v, want ErrExited with the crash in the logs", err)
		}
		t.Logf("error: %s", err)
	})

	t.Run("never healthy", func(t *testing.T) {
		t.Parallel()
		id := env.create(t, "never", []string{"MODE=never-healthy"}, "")
		env.start(t, id)
		addr := env.bridgeAddr(t, id)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		err := Wait(ctx, env.cli, Spec{Container: id, DockerHealth: true, Probes: []Probe{HTTP(addr, "/healthz")}})
		if !errors.Is(err, ErrUnhealthy) && !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrUnhealthy (or ErrTimeout)", err)
		}
		f := asFailure(t, err)
		if !strings.Contains(f.HealthOutput, "never healthy") || !strings.Contains(err.Error(), "last health check: 503 never healthy (MODE=never-healthy)") {
			t.Errorf("error lacks Docker's health check output: %s", err)
		}
		if want := "GET http://" + addr + "/healthz: 503 Service Unavailable: never healthy"; !strings.Contains(f.ProbeError, want) {
			t.Errorf("probe error = %q, want it to contain %q", f.ProbeError, want)
		}
		t.Logf("error: %s", err)
	})

	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		id := env.create(t, "slow", []string{"MODE=never-healthy"}, "")
		env.start(t, id)
		addr := env.bridgeAddr(t, id)
		// Shorter than Docker's 3 retries at 1s: the deadline comes first.
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		begin := time.Now()
		err := Wait(ctx, env.cli, Spec{Container: id, DockerHealth: true, Probes: []Probe{HTTP(addr, "/healthz")}})
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("Wait returned %s after a 1.5s deadline", d)
		}
		if !errors.Is(err, ErrTimeout) || errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		f := asFailure(t, err)
		if !strings.Contains(f.ProbeError, "503 Service Unavailable: never healthy") {
			t.Errorf("probe error = %q, want the app's 503", f.ProbeError)
		}
		if !strings.Contains(strings.Join(f.Logs, "\n"), "starting mode=never-healthy") {
			t.Errorf("logs = %q, want the app's start line (fetched after the deadline)", f.Logs)
		}
		t.Logf("error: %s", err)
	})

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		id := env.create(t, "cancel", []string{"WARMUP=1m"}, "")
		env.start(t, id)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		time.AfterFunc(500*time.Millisecond, cancel)
		begin := time.Now()
		err := Wait(ctx, env.cli, Spec{Container: id, DockerHealth: true})
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("Wait returned %s after being cancelled at 500ms", d)
		}
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}
