package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// splitFailures sorts a load's failed requests into those the named
// version of the app answered itself with a 5xx (a broken release serving
// until it is reverted) and the rest: requests lost on the way, which
// must be none.
func splitFailures(res *loadgen.Result, appVersion string) (byApp int, lost []loadgen.Sample) {
	for _, f := range res.Failures() {
		if f.Status >= 500 && f.Version == appVersion {
			byApp++
			continue
		}
		lost = append(lost, f)
	}
	return byApp, lost
}

func describeSamples(ss []loadgen.Sample) string {
	var lines []string
	for i, f := range ss {
		if i == 10 {
			break
		}
		lines = append(lines, fmt.Sprintf("%s %q at %s: %d %s", f.Method, f.Version, f.Start.Format("15:04:05.000"), f.Status, f.Err))
	}
	return strings.Join(lines, "\n")
}

// TestBakeRevertsConvergesAndCompletes: nginx on the host in front of
// baton's relay, steady load throughout.
//
//  1. An image that answers 500 and fails its health 5 s after it starts
//     serving is deployed with --bake 30s: baton reverts to the old
//     container in one relay call, removes the new one and exits 1. Not one
//     request of the load is lost; the ones the failing app answered with
//     500 itself are counted apart.
//  2. An image whose health stays OK but that resets every request's
//     connection 2 s after it starts serving is deployed with --bake 30s
//     --bake-max-resets 3: only the relay's reset count can catch it, and
//     it is reverted the same way. nginx answers the reset requests 502;
//     those within that deploy are counted apart as the failing app's.
//  3. baton is SIGKILLed while baking a good image: baton status reverts to
//     the old container (the bake did not pass), and nothing is lost.
//  4. The good image is deployed with a short bake: it bakes and completes.
func TestBakeRevertsConvergesAndCompletes(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	bad := e.version("bad", "v3-bad", map[string]string{"FAIL_AFTER": "5s"})
	resetting := e.version("reset", "v4-reset", map[string]string{"RESET_AFTER": "2s"})
	hostPort := testenv.FreePort(t)
	name := testenv.UniqueName("bake-")
	oldID := e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{"127.0.0.1:" + itoa(hostPort)}})
	// Set-up: the relay in front, the one nginx reload. --force redeploys
	// v1, so the serving container is baton's.
	e.mustDeploy("--force", "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", name)
	oldID = e.inspect(name).ID
	load := startLoad(t, ng.URL()+"/", 5*time.Minute)

	// 1. The broken release is reverted.
	start := time.Now()
	r := e.run("deploy", "--image", bad, "--bake", "30s", name)
	if r.code != 1 {
		t.Fatalf("deploy of the failing image exited %d, want 1 (reverted, old serving)", r.code)
	}
	if !strings.Contains(r.stderr, "into the bake") || !strings.Contains(r.stdout+r.stderr, "traffic is back on "+name) {
		t.Fatalf("the deploy did not say it reverted after the bake caught the failure:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
	}
	t.Logf("bad image reverted %s after the deploy began", time.Since(start).Round(100*time.Millisecond))
	e.assertUntouched(name, oldID, ng.URL()+"/", "v1")
	if p := e.recordPhase(); p != "" {
		t.Fatalf("deploy record left at phase %s after the revert", p)
	}

	// 2. A release that resets connections while its health stays OK.
	resetFrom := time.Now()
	r = e.run("deploy", "--image", resetting, "--bake", "30s", "--bake-max-resets", "3", name)
	resetTo := time.Now()
	if r.code != 1 || !strings.Contains(r.stderr, "--bake-max-resets 3") {
		t.Fatalf("deploy of the resetting image exited %d, want 1 reverted on its resets:\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("resetting image reverted %s after the deploy began", resetTo.Sub(resetFrom).Round(100*time.Millisecond))
	e.assertUntouched(name, oldID, ng.URL()+"/", "v1")

	// 3. Killed while baking: the next run reverts.
	killed, _ := e.runUntil(func(phase, msg string) bool { return phase == "bake" },
		"deploy", "--json", "--image", v2, "--bake", "2m", name)
	if !killed {
		t.Fatal("baton finished before it reached the bake")
	}
	if p := e.recordPhase(); p != "bake" {
		t.Fatalf("record phase after a kill while baking: %q, want bake", p)
	}
	assertServes(t, ng.URL()+"/", "v2") // the new one serves while nobody watches
	st := e.run("status", name)
	if st.code != 0 || !strings.Contains(st.stderr, "rolled back interrupted deploy") {
		t.Fatalf("status after a kill while baking: exit %d: %s", st.code, st.stderr)
	}
	e.assertUntouched(name, oldID, ng.URL()+"/", "v1")

	// 4. A good release bakes and completes.
	r = e.mustDeploy("--image", v2, "--bake", "3s", name)
	if !strings.Contains(r.stderr, "passed its bake") {
		t.Fatalf("the deploy did not report the bake: %s", r.stderr)
	}
	e.assertSingle(name, v2)
	assertServes(t, ng.URL()+"/", "v2")

	res := load.Stop()
	t.Logf("load: %s; versions %v", res.Summary(), res.Versions())
	byApp, lost := splitFailures(res, "v3-bad")
	// The resetting release answers nothing: its requests are nginx's 502s
	// during its deploy.
	resetByApp := 0
	lost = slices.DeleteFunc(lost, func(f loadgen.Sample) bool {
		if f.Status == 502 && f.Version == "" && f.Start.After(resetFrom) && f.Start.Before(resetTo) {
			resetByApp++
			return true
		}
		return false
	})
	t.Logf("%d of %d requests answered 500 by the failing release itself before the revert, %d reset by the resetting release (nginx 502); %d lost otherwise",
		byApp, res.Total(), resetByApp, len(lost))
	if len(lost) > 0 {
		t.Fatalf("%d requests failed that the failing app did not answer:\n%s", len(lost), describeSamples(lost))
	}
	if res.Versions()["v4-reset"] == 0 || resetByApp == 0 {
		t.Fatalf("the resetting release never served or never reset (versions %v, %d reset): the test did not test a revert on resets", res.Versions(), resetByApp)
	}
	if res.Versions()["v3-bad"] == 0 {
		t.Fatalf("the failing release never served (versions %v): the test did not test a revert under load", res.Versions())
	}
}
