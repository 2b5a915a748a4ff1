package e2e

import (
	"fmt"
	"github.com/docker/docker/api/types/container"
	"regexp"
	"slices"
	"strconv"
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
//     it is reverted the same way. nginx answers the reset requests 502
//     with no version; those within that deploy are counted apart as the
//     failing app's, and there may be no more of them than the resets the
//     relay counted of that container (which baton reports at the revert).
//  3. With no --http-probe recorded for the service, an image whose Docker
//     HEALTHCHECK (the app's own -probe mode) turns unhealthy 12 s after it
//     starts, while its answers stay good, is reverted on Docker's
//     health_status event alone; nothing fails.
//  4. An image that exits (status 3) 3 s after it starts serving is
//     reverted on its die event. The requests it had in flight get nginx's
//     502 with no version: each must have started during that deploy and
//     before the engine's die event (which comes after the exit: the
//     engine learns of it asynchronously, over a second late on a loaded
//     host), all must end within crashMoment of one another (the one
//     moment the process died), and there can be no more of them than the
//     load's concurrency (loadClients) or, if larger, the resets the relay
//     counted of it; no other request fails (dials to
//     the dead container fall back to the old one).
//  5. An image that closes its listener 3 s after it starts serving and
//     keeps running (its HEALTHCHECK slowed so it cannot turn unhealthy
//     first) is reverted by --bake-max-dial-errors 5; the relay sends the
//     refused dials to the old container. Connections already in the
//     app's accept queue when it closed the listener are reset by the
//     kernel (nginx's versionless 502): the app's own, no more than the
//     resets the relay counted of it.
//  6. baton is SIGKILLed while baking a good image: baton status reverts to
//     the old container (the bake did not pass), and nothing is lost.
//  7. The good image is deployed with a short bake: it bakes and completes.
func TestBakeRevertsConvergesAndCompletes(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	bad := e.version("bad", "v3-bad", map[string]string{"FAIL_AFTER": "5s"})
	resetting := e.version("reset", "v4-reset", map[string]string{"RESET_AFTER": "2s"})
	unhealthy := e.version("unhealthy", "v5-unhealthy", map[string]string{"MODE": "unhealthy-after", "UNHEALTHY_AFTER": "12s"})
	crashing := e.version("crash", "v6-crash", map[string]string{"EXIT_AFTER": "3s"})
	closing := e.versionWith("close", "v7-close", map[string]string{"CLOSE_AFTER": "3s"}, testenv.DemoImageOpts{HealthRetries: 60})
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
	resetsCounted, _ := revertCounts(t, r)

	// 3. Docker's HEALTHCHECK alone: no --http-probe for the service (and
	// --bake-max-resets, recorded by step 2, off again in steps 3-5, so
	// each step is reverted by the trigger under test).
	r = e.run("deploy", "--image", unhealthy, "--http-probe=", "--bake-max-resets", "0", "--bake", "30s", name)
	if r.code != 1 || !strings.Contains(r.stderr, "turned unhealthy (Docker HEALTHCHECK)") || !strings.Contains(r.stderr, "into the bake") {
		t.Fatalf("deploy of the image turning unhealthy exited %d, want 1 reverted on its Docker health:\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, "fails GET") {
		t.Fatalf("the bake watched an --http-probe, want Docker's HEALTHCHECK alone:\n%s", r.stderr)
	}
	e.assertUntouched(name, oldID, ng.URL()+"/", "v1")

	// 4. The new container crashes during the bake under an on-failure
	// restart policy (set on the old container here, cloned with the rest
	// of its configuration), so the engine would bring it back: it is
	// reverted at its die event all the same. Whether the engine restarted
	// it before baton removed it is a race, not asserted.
	setRestart(t, e, oldID, container.RestartPolicyOnFailure)
	dies := e.watchDies(name)
	crashFrom := time.Now()
	r = e.run("deploy", "--image", crashing, "--http-probe=", "--bake-max-resets", "0", "--bake", "30s", name)
	crashTo := time.Now()
	if r.code != 1 || !strings.Contains(r.stderr, "exited") || !strings.Contains(r.stderr, "into the bake") {
		t.Fatalf("deploy of the crashing image exited %d, want 1 reverted on its exit:\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("crashing image reverted %s after the deploy began", crashTo.Sub(crashFrom).Round(100*time.Millisecond))
	e.assertUntouched(name, oldID, ng.URL()+"/", "v1")
	crashResets, _ := revertCounts(t, r)
	died := dies()
	// The crashing one died, and maybe (restarted) once more before baton
	// removed it; the old container never.
	if len(died) < 1 || len(died) > 2 {
		t.Fatalf("the engine reported %d die events of %s's containers during the crash step, want 1 or 2 (the crashing one, restarted)", len(died), name)
	}
	setRestart(t, e, oldID, container.RestartPolicyDisabled)

	// 5. The new container stops listening but keeps running.
	closeFrom := time.Now()
	r = e.run("deploy", "--image", closing, "--http-probe=", "--bake-max-resets", "0", "--bake", "30s", "--bake-max-dial-errors", "5", name)
	closeTo := time.Now()
	if r.code != 1 || !strings.Contains(r.stderr, "--bake-max-dial-errors 5") {
		t.Fatalf("deploy of the image that stops listening exited %d, want 1 reverted on its dial errors:\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	e.assertUntouched(name, oldID, ng.URL()+"/", "v1")
	closeResets, _ := revertCounts(t, r)

	// 6. Killed while baking: the next run reverts.
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

	// 7. A good release bakes and completes.
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
	// during its deploy, no more than the resets the relay counted of it.
	lost, resetByApp := takeReset502s(lost, resetFrom, resetTo)
	// When the engine restarted the crashing release (a second die event:
	// baton removing the restarted instance), the relay's retried dials
	// could reach it while it warmed up, before the revert: its own 503
	// "warming up", the release's answer as the failing release's 500s
	// are (seen once on the current engine, whose die event came about a
	// second after the crash).
	restartAnswered := 0
	if len(died) == 2 {
		lost = slices.DeleteFunc(lost, func(f loadgen.Sample) bool {
			if f.Status == 503 && f.Version == "" && strings.Contains(f.Err, "warming up") && f.Start.After(crashFrom) && f.Start.Before(crashTo) && f.End().After(died[0]) {
				restartAnswered++
				return true
			}
			return false
		})
	}
	// The crashing release's requests in flight when it died: nginx's 502
	// with no version, sent during its deploy before the die event.
	var inFlight []loadgen.Sample
	lost = slices.DeleteFunc(lost, func(f loadgen.Sample) bool {
		if f.Version == "" && f.Start.After(crashFrom) && f.Start.Before(died[0]) && f.Start.Before(crashTo) {
			inFlight = append(inFlight, f)
			return true
		}
		return false
	})
	// The closing release's: connections the kernel had completed on its
	// listener (in its accept queue) when the app closed it are reset, as
	// closing a listener does; nginx answers 502 with no version. They
	// were the app's own, and the relay counted each as a reset of it.
	lost, closedByApp := takeReset502s(lost, closeFrom, closeTo)
	slices.SortFunc(inFlight, func(a, b loadgen.Sample) int { return a.End().Compare(b.End()) })
	if n := len(inFlight); n > 1 && inFlight[n-1].End().Sub(inFlight[0].End()) > crashMoment {
		t.Fatalf("the %d requests that failed during the crash step ended over %s, not at the one moment the app died (within %s):\n%s",
			n, inFlight[n-1].End().Sub(inFlight[0].End()), crashMoment, describeSamples(inFlight))
	}
	t.Logf("%d of %d requests answered 500 by the failing release itself before the revert; %d reset by the resetting release (nginx 502; the relay counted %d resets of it); %d in flight on the crashing release when it died (the engine's die event at %s; at most %d, the load's concurrency; the relay counted %d resets of it); %d answered 503 by its restarted instance while it warmed up (%d die events); %d reset in the closing release's accept queue (the relay counted %d resets of it); %d lost otherwise",
		byApp, res.Total(), resetByApp, resetsCounted, len(inFlight), died[0].Format("15:04:05.000"), loadClients, crashResets, restartAnswered, len(died), closedByApp, closeResets, len(lost))
	if len(lost) > 0 {
		t.Fatalf("%d requests failed that the failing apps did not answer or break:\n%s", len(lost), describeSamples(lost))
	}
	if uint64(closedByApp) > closeResets {
		t.Fatalf("%d versionless 502s during the closing release's deploy, but the relay counted only %d resets of that container: some were lost on the way", closedByApp, closeResets)
	}
	if uint64(resetByApp) > resetsCounted {
		t.Fatalf("%d versionless 502s during the resetting deploy, but the relay counted only %d resets of that container: some were lost on the way", resetByApp, resetsCounted)
	}
	// The load has at most loadClients requests of its own in flight, but
	// nginx may also have retried one onto the dying container (each a
	// reset the relay counted): the bound is the larger of the two.
	if bound := max(loadClients, int(crashResets)); len(inFlight) > bound {
		t.Fatalf("%d requests failed around the crash, more than the %d the load can have in flight (the relay counted %d resets):\n%s", len(inFlight), loadClients, crashResets, describeSamples(inFlight))
	}
	if res.Versions()["v4-reset"] == 0 || resetByApp == 0 {
		t.Fatalf("the resetting release never served or never reset (versions %v, %d reset): the test did not test a revert on resets", res.Versions(), resetByApp)
	}
	if res.Versions()["v3-bad"] == 0 {
		t.Fatalf("the failing release never served (versions %v): the test did not test a revert under load", res.Versions())
	}
	for _, v := range []string{"v5-unhealthy", "v6-crash", "v7-close"} {
		if res.Versions()[v] == 0 {
			t.Fatalf("release %s never served (versions %v): the test did not test its revert under load", v, res.Versions())
		}
	}
}

// takeReset502s removes from failed the requests nginx answered 502 with no
// version (a connection the app reset) that started between from and to,
// and returns the rest and how many it removed.
func takeReset502s(failed []loadgen.Sample, from, to time.Time) ([]loadgen.Sample, int) {
	n := len(failed)
	failed = slices.DeleteFunc(failed, func(f loadgen.Sample) bool {
		return f.Status == 502 && f.Version == "" && f.Start.After(from) && f.Start.Before(to)
	})
	return failed, n - len(failed)
}

// crashMoment is how close together the requests a crashing app had in
// flight must end: they all end when its process exits.
const crashMoment = 250 * time.Millisecond

// revertCounts reads, from a reverted deploy's output, the resets and
// failed dials the relay counted of the reverted container over its whole
// time as a target.
func revertCounts(t *testing.T, r batonRun) (resets, dialErrors uint64) {
	t.Helper()
	m := regexp.MustCompile(`the relay counted (\d+) resets and (\d+) failed dials of it`).FindStringSubmatch(r.stdout + r.stderr)
	if m == nil {
		t.Fatalf("the revert did not report the relay's counts of the reverted container:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
	}
	resets, _ = strconv.ParseUint(m[1], 10, 64)
	dialErrors, _ = strconv.ParseUint(m[2], 10, 64)
	return resets, dialErrors
}

// setRestart sets a container's restart policy (docker update --restart).
func setRestart(t *testing.T, e *env, id string, mode container.RestartPolicyMode) {
	t.Helper()
	if _, err := e.cli.ContainerUpdate(t.Context(), id, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: mode}}); err != nil {
		t.Fatalf("docker update --restart %s %s: %v", mode, id[:12], err)
	}
}
