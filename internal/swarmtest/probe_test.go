package swarmtest

import (
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/testenv"
)

// plainDemo is a demo image without a HEALTHCHECK: only baton's probe flags
// can gate an update on its health.
func plainDemo(t *testing.T, cli *client.Client, version string, env map[string]string) string {
	ref, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: version, Env: env})
	return ref
}

// TestSwarmProbeHealthcheck proves --http-probe with --probe-cmd becomes the
// tasks' HEALTHCHECK and Swarm gates the update on it: images without a
// HEALTHCHECK of their own deploy with healthy tasks, a never-healthy one
// (which without the probe would count as ready once running) rolls back,
// and a probe baton cannot run is refused before anything changes; all
// under load through nginx, with no failed request.
func TestSwarmProbeHealthcheck(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Docker engine of its own (skipped with -short)")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	v1, v2 := plainDemo(t, cli, "v1", nil), plainDemo(t, cli, "v2", nil)
	bad := plainDemo(t, cli, "bad", map[string]string{"MODE": "never-healthy"})
	s := newSetup(t, v1, time.Second)
	l := s.load(t)
	probe := []string{"--http-probe", "/healthz", "--health-timeout", "10s", "--update-monitor", "2s"}

	v := s.service(t).Version
	r := s.run(t, append([]string{"deploy", s.name, "--image", v2}, probe...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "--probe-cmd") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Fatalf("--http-probe without --probe-cmd: exit %d, want 2 and one line naming --probe-cmd\n%s%s", r.code, r.stdout, r.stderr)
	}
	if now := s.service(t).Version; now != v {
		t.Fatalf("a refused probe changed the service: version %d -> %d", v.Index, now.Index)
	}
	t.Logf("refused: %s", strings.TrimSpace(r.stderr))

	start := time.Now()
	r = s.run(t, append([]string{"deploy", s.name, "--image", v2, "--probe-cmd", "/demoapp -probe"}, probe...)...)
	if r.code != 0 {
		t.Fatalf("deploy with the probe: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("deploy with the probe took %s:\n%s%s", time.Since(start).Round(100*time.Millisecond), r.stderr, r.stdout)
	hc := s.service(t).Spec.TaskTemplate.ContainerSpec.Healthcheck
	if hc == nil || strings.Join(hc.Test, " ") != "CMD /demoapp -probe http://127.0.0.1:8080/healthz" {
		t.Fatalf("service's healthcheck after the deploy: %+v", hc)
	}
	if got := s.image(t); got != v2 {
		t.Fatalf("service runs %s, want %s", got, v2)
	}
	s.waitHealthy(t, 2)
	// The same deploy again changes nothing (the spec read back must
	// compare equal to the one sent, whatever the engine's API keeps).
	v = s.service(t).Version
	r = s.run(t, append([]string{"deploy", s.name, "--image", v2, "--probe-cmd", "/demoapp -probe"}, probe...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "up to date") {
		t.Fatalf("the same probe deploy again: exit %d, want 0 and up to date\n%s%s", r.code, r.stdout, r.stderr)
	}
	if now := s.service(t).Version; now != v {
		t.Fatalf("an up-to-date deploy changed the service: version %d -> %d", v.Index, now.Index)
	}

	// The HEALTHCHECK stays in the spec: a later deploy without the flags
	// is gated on it too.
	r = s.run(t, "deploy", s.name, "--image", bad, "--update-monitor", "2s")
	if r.code != 1 || !strings.Contains(r.stderr, "keeps serving") {
		t.Fatalf("never-healthy image under the probe: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := s.image(t); got != v2 {
		t.Fatalf("after the rollback the service runs %s, want %s", got, v2)
	}
	s.waitRunning(t, v2, 2)

	res := l.Stop()
	t.Logf("probe deploys under load: %d of %d requests failed", res.Failed(), res.Total())
	testenv.CheckLoad(t, res)
}

// waitHealthy waits until n running tasks' containers report healthy.
func (s *setup) waitHealthy(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		healthy := 0
		tasks, err := s.cli.TaskList(t.Context(), swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", s.svcID), filters.Arg("desired-state", "running"))})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range tasks {
			if cs := tk.Status.ContainerStatus; cs != nil && cs.ContainerID != "" {
				if c, err := s.cli.ContainerInspect(t.Context(), cs.ContainerID); err == nil && c.State.Health != nil && c.State.Health.Status == "healthy" {
					healthy++
				}
			}
		}
		if healthy == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s: %d of %d tasks healthy after a minute", s.name, healthy, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
