package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/baton-sh/baton/internal/testenv"
)

// TestDeployDoesNotWaitForDockersHealthSchedule: Docker runs an image's
// HEALTHCHECK first one --interval after the start (30 s here, Docker's
// default), so a deploy gated on Docker's status alone would take 30 s for
// an app ready in 2. baton runs the same check in the new container itself
// until Docker has: every deploy here ends while Docker has run no check
// yet (its health log is empty, still "starting"), and nothing but the
// image's HEALTHCHECK gates it (no probe), under GET/POST load through
// nginx with the app answering 503 for its first 2 s. The early run can
// therefore not have let traffic in before the app was ready: a 503 would
// be a failed request.
func TestDeployDoesNotWaitForDockersHealthSchedule(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	slow := testenv.DemoImageOpts{HealthInterval: 30 * time.Second, HealthStartPeriod: time.Millisecond}
	warm := map[string]string{"WARMUP": "2s"}
	v2 := e.versionWith("v2", "v2", warm, slow)
	v3 := e.versionWith("v3", "v3", warm, slow)
	hostPort := testenv.FreePort(t)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{"127.0.0.1:" + itoa(hostPort)}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand()}

	checkNotWaited := func(step string, r batonRun) {
		t.Helper()
		c := e.inspect(name)
		if c.State == nil || c.State.Health == nil {
			t.Fatalf("%s: %s has no health state", step, name)
		}
		if n := len(c.State.Health.Log); n != 0 || c.State.Health.Status != container.Starting {
			t.Fatalf("%s: Docker had run %d checks (status %s) when the deploy returned after %s: it waited for Docker's schedule", step, n, c.State.Health.Status, r.took.Round(time.Millisecond))
		}
		if !strings.Contains(r.stdout+r.stderr, "run by baton") {
			t.Errorf("%s: the output does not say baton runs the HEALTHCHECK:\n%s%s", step, r.stdout, r.stderr)
		}
		t.Logf("%s: deployed in %s, Docker's first check still to come", step, r.took.Round(time.Millisecond))
	}
	// The first deploy sets the relay up (nginx's one reload), then two
	// under load.
	checkNotWaited("deploy v2", e.mustDeploy(append(append([]string{"--image", v2}, flags...), name)...))
	load := startLoad(t, ng.URL()+"/", 3*time.Minute)
	checkNotWaited("deploy v3", e.mustDeploy(append(append([]string{"--image", v3}, flags...), name)...))
	checkNotWaited("deploy v2 again", e.mustDeploy(append(append([]string{"--image", v2}, flags...), name)...))
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v3"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: the deploys did not move traffic", res.Versions())
	}
	e.assertSingle(name, v2)
	assertServes(t, ng.URL()+"/", "v2")
}
