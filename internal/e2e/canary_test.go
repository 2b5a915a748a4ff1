package e2e

import (
	"regexp"
	"strconv"
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
//  5. A timed canary (--canary 20:30s) of an image that answers 500 and
//     fails its health 3 s after it starts serving is reverted as a bake
//     is: exit 1, the old container serving (the same one), the canary
//     removed; the only failed requests are the failing app's own 500s.
//  6. baton is SIGKILLed during a timed canary (--canary 20:2m): baton
//     status converges it (the split ends, the old container serves, the
//     canary is removed), and nothing is lost.
func TestCanaryPromoteAbort(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	bad := e.version("bad", "v3-bad", map[string]string{"FAIL_AFTER": "3s"})
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
	// The counts are the relay's: the canary has served some of the 800
	// requests above (each a new upstream connection), the old container
	// more than it (over its whole time as a target).
	m := regexp.MustCompile(`80% -> [^(]*\((\d+) served.*20% canary -> [^(]*\((\d+) served`).FindStringSubmatch(st.stdout)
	if m == nil {
		t.Fatalf("status during the canary does not count what each side served:\n%s", st.stdout)
	}
	oldServed, _ := strconv.Atoi(m[1])
	canaryServed, _ := strconv.Atoi(m[2])
	if canaryServed < 80 || oldServed <= canaryServed {
		t.Fatalf("status during the canary: old served %d, canary %d; want the canary at least 80 (20%% of 400 of the 800 requests) and the old more:\n%s", oldServed, canaryServed, st.stdout)
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
	curID := e.assertSingle(name, v1).ID

	// 5. A timed canary of a failing release reverts.
	r = e.run("deploy", "--image", bad, "--canary", "20:30s", name)
	if r.code != 1 || !strings.Contains(r.stderr, "into the canary") || !strings.Contains(r.stdout+r.stderr, "traffic is back on "+name) {
		t.Fatalf("timed canary of the failing image: exit %d, want 1 reverted:\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	e.assertUntouched(name, curID, ng.URL()+"/", "v1")
	if p := e.recordPhase(); p != "" {
		t.Fatalf("deploy record left at phase %s after the canary's revert", p)
	}

	// 6. Killed during a timed canary: status converges.
	killed, _ := e.runUntil(func(phase, msg string) bool { return phase == "canary" && strings.HasPrefix(msg, "canary for") },
		"deploy", "--json", "--image", v2, "--canary", "20:2m", name)
	if !killed {
		t.Fatal("baton finished before the canary was on")
	}
	if p := e.recordPhase(); p != "canary" {
		t.Fatalf("record phase after a kill during the canary: %q, want canary", p)
	}
	st = e.run("status", name)
	if st.code != 0 || !strings.Contains(st.stderr, "rolled back interrupted deploy") {
		t.Fatalf("status after a kill during the canary: exit %d: %s", st.code, st.stderr)
	}
	e.assertUntouched(name, curID, ng.URL()+"/", "v1")
	if st = e.run("status", name); strings.Contains(st.stdout, "canary ->") {
		t.Fatalf("the split is still on after status converged:\n%s", st.stdout)
	}

	res := load.Stop()
	t.Logf("load: %s; versions %v", res.Summary(), res.Versions())
	byApp, lost := splitFailures(res, "v3-bad")
	t.Logf("%d of %d requests answered 500 by the failing canary itself before the revert; %d lost otherwise", byApp, res.Total(), len(lost))
	if len(lost) > 0 {
		t.Fatalf("%d requests failed that the failing canary did not answer:\n%s", len(lost), describeSamples(lost))
	}
	if res.Versions()["v3-bad"] == 0 {
		t.Fatalf("the failing canary never served (versions %v): the test did not test a canary's revert under load", res.Versions())
	}
	during := versionsBetween(res, canaryOn, canaryOff)
	total := during["v1"] + during["v2"]
	share := float64(during["v2"]) / float64(total)
	t.Logf("with the 20%% canary on: %v (%.1f%% to the canary)", during, 100*share)
	if total < 600 || share < 0.15 || share > 0.25 {
		t.Fatalf("canary share %.1f%% of %d requests, want 20%% ± 5", 100*share, total)
	}
}
