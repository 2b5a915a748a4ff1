package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// versionsBetween counts the successful requests of res that started
// between from and to, by the version that answered.
func versionsBetween(res *loadgen.Result, from, to time.Time) map[string]int {
	out := map[string]int{}
	for _, s := range res.Samples() {
		if s.OK() && !s.Start.Before(from) && s.Start.Before(to) {
			out[s.Version]++
		}
	}
	return out
}

// TestCanaryPromoteAbort: nginx in a container in front of baton's relay,
// steady load throughout, not one request may fail.
//
//  1. deploy --canary 20 returns with the canary on: roughly 20% of the
//     requests are answered by the new version meanwhile, status shows the
//     split and the counts, and another deploy is refused (exit 2).
//  2. baton abort sends all back to the old container and removes the new.
//  3. A second canary is promoted: the deploy finishes on the new version.
//  4. A timed canary (--canary 20:3s) switches fully on its own.
func TestCanaryPromoteAbort(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("canary-")
	e.runWeb(name, v1)
	ng := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: e.net, UpstreamFile: "web.conf", InitialServers: []string{name + ":8080"}})
	e.mustDeploy("--force", "--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz", name)
	oldID := e.inspect(name).ID
	load := startLoad(t, ng.URL()+"/", 5*time.Minute)

	// 1. A canary waiting for a decision.
	r := e.mustDeploy("--image", v2, "--canary", "20", name)
	if !strings.Contains(r.stdout, "canary of "+name) {
		t.Fatalf("deploy --canary did not say the canary is on: %s", r.stdout)
	}
	canaryOn := time.Now()
	if p := e.recordPhase(); p != "canary" {
		t.Fatalf("record phase with the canary on: %q, want canary", p)
	}
	if refused := e.run("deploy", "--image", v1, name); refused.code != 2 || !strings.Contains(refused.stderr, "canary of "+name+" is on") {
		t.Fatalf("a deploy during the canary: exit %d (want 2): %s", refused.code, refused.stderr)
	}
	for n0 := load.Completed(); load.Completed() < n0+800; {
		time.Sleep(100 * time.Millisecond) // let the split serve a sample
	}
	st := e.run("status", name)
	if st.code != 0 || !strings.Contains(st.stdout, "80% ->") || !strings.Contains(st.stdout, "20% canary ->") || !strings.Contains(st.stdout, "served") {
		t.Fatalf("status during the canary: exit %d, want the split with counts:\n%s\n%s", st.code, st.stdout, st.stderr)
	}
	canaryOff := time.Now()

	// 2. Abort.
	if ab := e.run("abort", name); ab.code != 0 {
		t.Fatalf("abort: exit %d: %s", ab.code, ab.stderr)
	}
	e.assertUntouched(name, oldID, ng.URL()+"/", "v1")
	if e.recordPhase() != "" {
		t.Fatal("record left after abort")
	}
	if again := e.run("abort", name); again.code != 2 {
		t.Fatalf("abort with no canary on: exit %d, want 2: %s", again.code, again.stderr)
	}

	// 3. Promote.
	e.mustDeploy("--image", v2, "--canary", "20", name)
	if pr := e.run("promote", name); pr.code != 0 {
		t.Fatalf("promote: exit %d: %s", pr.code, pr.stderr)
	}
	e.assertSingle(name, v2)
	assertServes(t, ng.URL()+"/", "v2")

	// 4. A timed canary finishes by itself.
	r = e.mustDeploy("--image", v1, "--canary", "20:3s", name)
	if !strings.Contains(r.stderr, "passed its canary") {
		t.Fatalf("timed canary: %s", r.stderr)
	}
	e.assertSingle(name, v1)

	res := load.Stop()
	testenv.CheckLoad(t, res)
	during := versionsBetween(res, canaryOn, canaryOff)
	total := during["v1"] + during["v2"]
	share := float64(during["v2"]) / float64(total)
	t.Logf("with the 20%% canary on: %v (%.1f%% to the canary)", during, 100*share)
	if total < 600 || share < 0.15 || share > 0.25 {
		t.Fatalf("canary share %.1f%% of %d requests, want 20%% ± 5", 100*share, total)
	}
}
