package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/testenv"
)

// TestWatchDeploysMovedTag: baton watch deploys a container when its tag
// moves in the registry (a new build pushed under the same tag), with zero
// failed requests through nginx, and does nothing at all while the tag
// stays: no deploy, no pull. A container without baton.enable=true running
// the same tag is left alone. Then the same with a cron --schedule.
func TestWatchDeploysMovedTag(t *testing.T) {
	e := newEnv(t)
	s := e.service("live", "v1", nil)
	bystander := testenv.UniqueName("bystander-")
	e.runLabelled(bystander, s.ref, map[string]string{"baton.scope": s.scope}) // in scope, not enabled
	bystanderImage := e.inspect(bystander).Image
	before := e.inspect(s.name)
	base := len(e.journal())

	// Every image pull on the engine, from now on.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pulls, _ := e.cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", "image"), filters.Arg("event", "pull"))})

	metricsURL := "http://127.0.0.1:" + itoa(testenv.FreePort(t))
	w := e.start("watch", "--interval", "2s", "--scope", s.scope, "--metrics-listen", strings.TrimPrefix(metricsURL, "http://"))
	metricsURL += "/metrics"
	w.waitLine(10*time.Second, "msg=metrics")

	// Unchanged: three checks, nothing deployed, nothing pulled.
	waitFor(t, 20*time.Second, "three unchanged checks", func() bool {
		return metric(t, metricsURL, "baton_watch_checks_total", `target="`+s.name+`"`, `result="unchanged"`) >= 3
	})
	if c := e.inspect(s.name); c.ID != before.ID || c.Image != before.Image {
		t.Fatalf("an unchanged tag replaced the container: %s -> %s", before.ID[:12], c.ID[:12])
	}
	if n := len(e.journal()); n != base {
		t.Fatalf("journal has %d new entries while nothing changed", n-base)
	}
	// Other tests pull on the same engine: only a pull of this service's
	// repository counts.
	repo, _, _ := strings.Cut(s.ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	for drained := false; !drained; {
		select {
		case ev := <-pulls:
			if strings.HasPrefix(ev.Actor.ID, repo+":") || strings.HasPrefix(ev.Actor.ID, repo+"@") || ev.Actor.ID == repo {
				t.Fatalf("the watcher pulled %s while the tag was unchanged", ev.Actor.ID)
			}
		default:
			drained = true
		}
	}
	if n := metric(t, metricsURL, "baton_watch_checks_total", `target="`+bystander+`"`); n != 0 {
		t.Fatalf("the watcher checked %s, which is not enabled (%v checks)", bystander, n)
	}

	load := startLoad(t, s.ng.URL()+"/", 3*time.Minute)
	e.version("live", "v2", nil) // a new build under the same tag
	pushed := time.Now()
	took := waitFor(t, 60*time.Second, "watch deploys the new digest", func() bool { return len(entriesBy(e.journal(), "watch")) == 1 })
	en := entriesBy(e.journal(), "watch")[0]
	t.Logf("pushed -> deploy started %s, deploy took %s, pushed -> done %s", en.StartedAt.Sub(pushed).Round(time.Millisecond), en.Duration.Round(time.Millisecond), took.Round(time.Millisecond))
	if en.Outcome != "deployed" || en.NewImage != s.ref || !strings.HasPrefix(en.Who, "watch@") || en.Error != "" {
		t.Fatalf("journal entry %+v", en)
	}
	if d := en.StartedAt.Sub(pushed); d > 2*2*time.Second+5*time.Second {
		t.Fatalf("the deploy started %s after the push; want within one 2s interval (plus slack)", d)
	}
	c := e.assertSingle(s.name, s.ref)
	if c.Image == before.Image || c.Image != en.NewImageID {
		t.Fatalf("container image %s, old %s, journal says %s", c.Image, before.Image, en.NewImageID)
	}
	if c.Config.Labels["baton.enable"] != "true" || c.Config.Labels["baton.scope"] != s.scope {
		t.Fatalf("opt-in labels lost on the new container: %v", c.Config.Labels)
	}
	assertServes(t, s.ng.URL()+"/", "v2")
	if got := e.inspect(bystander).Image; got != bystanderImage {
		t.Fatal("the container without baton.enable=true was redeployed")
	}
	// The three metric families moved.
	if n := metric(t, metricsURL, "baton_deploys_total", `target="`+s.name+`"`, `result="deployed"`, `trigger="watch"`); n != 1 {
		t.Fatalf("baton_deploys_total deployed = %v, want 1", n)
	}
	if n := metric(t, metricsURL, "baton_deploy_duration_seconds_count", `target="`+s.name+`"`); n != 1 {
		t.Fatalf("baton_deploy_duration_seconds_count = %v, want 1", n)
	}
	if ts := metric(t, metricsURL, "baton_last_success_timestamp_seconds", `target="`+s.name+`"`); ts < float64(pushed.Unix()) {
		t.Fatalf("baton_last_success_timestamp_seconds = %v, before the push at %d", ts, pushed.Unix())
	}
	if code, took := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("watch exited %d after SIGTERM (in %s)", code, took)
	}

	// A cron schedule with seconds: every 2s.
	w = e.start("watch", "--schedule", "*/2 * * * * *", "--scope", s.scope)
	w.waitLine(10*time.Second, "msg=watching")
	e.version("live", "v3", nil)
	pushed = time.Now()
	waitFor(t, 60*time.Second, "scheduled watch deploys the new digest", func() bool { return len(entriesBy(e.journal(), "watch")) == 2 })
	en = entriesBy(e.journal(), "watch")[1]
	t.Logf("schedule: pushed -> deploy started %s, deploy took %s", en.StartedAt.Sub(pushed).Round(time.Millisecond), en.Duration.Round(time.Millisecond))
	if en.Outcome != "deployed" {
		t.Fatalf("journal entry %+v", en)
	}
	if code, _ := w.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("watch exited %d after SIGTERM", code)
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 || res.Versions()["v3"] == 0 {
		t.Fatalf("versions served %v", res.Versions())
	}
	e.assertSingle(s.name, s.ref)
	assertServes(t, s.ng.URL()+"/", "v3")
	if n := len(e.journal()); n != base+2 {
		t.Fatalf("journal has %d new entries, want the 2 watch deploys", n-base)
	}
}

// TestWebhookDeploys: baton serve deploys on a correctly signed or
// bearer-authenticated request in each payload format, each selecting the
// image it names, with zero failed requests; a bad or missing signature gets
// 401 and deploys nothing.
func TestWebhookDeploys(t *testing.T) {
	e := newEnv(t)
	s := e.service("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	other := testenv.UniqueName("other-")
	e.runLabelled(other, s.ref, map[string]string{"baton.scope": s.scope}) // not enabled
	before := e.inspect(s.name)
	base := len(e.journal())

	dir := t.TempDir()
	secret, token := longSecret("secret-"), longSecret("token-")
	writeSecret(t, filepath.Join(dir, "secret"), secret+"\n")
	writeSecret(t, filepath.Join(dir, "token"), token)
	addr := "127.0.0.1:" + itoa(testenv.FreePort(t))
	srv := e.start("serve", "--listen", addr, "--secret-file", filepath.Join(dir, "secret"), "--token-file", filepath.Join(dir, "token"), "--scope", s.scope)
	testenv.WaitHTTP(t, "http://"+addr+"/healthz", 10*time.Second)
	h := &hook{t: t, base: "http://" + addr, token: token, secret: secret}
	load := startLoad(t, s.ng.URL()+"/", 3*time.Minute)

	// Refused: nothing may happen.
	body := jsonBody(t, map[string]string{"image": v2, "actor": "ci-pipeline"})
	for _, c := range []struct{ what, auth string }{
		{"missing signature", ""},
		{"bad signature", sign("not-the-secret", body)},
		{"signature of another body", sign(secret, []byte(`{"image":"evil"}`))},
		{"sha1 prefix", "sha1=" + strings.TrimPrefix(sign(secret, body), "sha256=")},
		{"body-only signature of a generic body (the scheme before v1)", sign(secret, body)},
	} {
		if r := h.post(s.name, c.auth, body); r.code != 401 {
			t.Fatalf("%s: %d %s, want 401", c.what, r.code, r.raw)
		}
	}
	bad := &hook{t: t, base: h.base, token: "wrong-token"}
	if r := bad.post(s.name, "bearer", body); r.code != 401 {
		t.Fatalf("wrong bearer token: %d %s", r.code, r.raw)
	}
	if r := h.post(other, "hmac", body); r.code != 403 {
		t.Fatalf("container not enabled: %d %s, want 403", r.code, r.raw)
	}
	if r := h.post("no-such-container-"+s.scope, "hmac", body); r.code != 404 {
		t.Fatalf("unknown container: %d %s, want 404", r.code, r.raw)
	}
	if r := h.post(s.name, "hmac", append([]byte(`{"image":"`), append(make([]byte, 2<<20), `"}`...)...)); r.code != 413 {
		t.Fatalf("oversized body: %d, want 413", r.code)
	}
	if r := h.status("anything"); r.code != 404 {
		t.Fatalf("status of an unknown id: %d", r.code)
	}
	if c := e.inspect(s.name); c.ID != before.ID {
		t.Fatal("a refused request replaced the container")
	}
	if n := len(e.journal()); n != base {
		t.Fatalf("refused requests left %d journal entries", n-base)
	}

	// Generic JSON, HMAC-signed: deploys the image it names.
	r := h.post(s.name, "hmac", body)
	if r.code != 202 || r.body["id"] == nil || r.body["status_url"] != "/v1/deploys/"+r.body["id"].(string) {
		t.Fatalf("signed generic request: %d %s", r.code, r.raw)
	}
	st := h.waitDone(r.body["id"].(string), 90*time.Second)
	if st["state"] != "deployed" || st["new_image"] != v2 {
		t.Fatalf("status %v", st)
	}
	e.assertSingle(s.name, v2)
	assertServes(t, s.ng.URL()+"/", "v2")

	// Docker Hub, bearer token: deploys the pushed tag of the container's repository.
	hub := jsonBody(t, map[string]any{
		"callback_url": "https://registry.hub.docker.com/u/x/y/hook/1/",
		"push_data":    map[string]any{"pushed_at": 1700000000, "pusher": "alice", "tag": "v1"},
		"repository":   map[string]any{"repo_name": e.repo, "name": filepath.Base(e.repo), "namespace": filepath.Dir(e.repo)},
	})
	r = h.post(s.name, "bearer", hub)
	if r.code != 202 {
		t.Fatalf("Docker Hub payload: %d %s", r.code, r.raw)
	}
	if st := h.waitDone(r.body["id"].(string), 90*time.Second); st["state"] != "deployed" || st["new_image"] != s.ref {
		t.Fatalf("status %v", st)
	}
	e.assertSingle(s.name, s.ref)

	// A registry notification, as docker-registry sends it: only the tagged
	// manifest push of this repository deploys.
	h.contentType = "application/vnd.docker.distribution.events.v1+json"
	note := registryNotification(t, e.repo, "v2", e.reg.Addr())
	r = h.post(s.name, "body-hmac", note)
	if r.code != 202 {
		t.Fatalf("registry notification: %d %s", r.code, r.raw)
	}
	if st := h.waitDone(r.body["id"].(string), 90*time.Second); st["state"] != "deployed" || st["new_image"] != v2 {
		t.Fatalf("status %v", st)
	}
	e.assertSingle(s.name, v2)
	for what, b := range map[string][]byte{
		"another repository": registryNotification(t, "shop/other", "v1", e.reg.Addr()),
		"a pull":             []byte(strings.ReplaceAll(string(registryNotification(t, e.repo, "v1", e.reg.Addr())), `"push"`, `"pull"`)),
	} {
		if r := h.post(s.name, "bearer", b); r.code != 200 || r.body["ignored"] == nil {
			t.Fatalf("notification of %s: %d %s, want 200 ignored", what, r.code, r.raw)
		}
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	assertServes(t, s.ng.URL()+"/", "v2")

	hooks := entriesBy(e.journal(), "webhook")
	if len(hooks) != 3 || len(e.journal()) != base+3 {
		t.Fatalf("journal: %d webhook entries of %d new, want 3", len(hooks), len(e.journal())-base)
	}
	for i, want := range []struct{ who, image string }{{"ci-pipeline@127.0.0.1", v2}, {"alice@127.0.0.1", s.ref}, {"127.0.0.1", v2}} {
		if hooks[i].Who != want.who || hooks[i].NewImage != want.image || hooks[i].Outcome != "deployed" || hooks[i].OldImage == "" {
			t.Fatalf("journal entry %d: %+v, want who %s image %s", i, hooks[i], want.who, want.image)
		}
	}
	if n := metricWith(t, h.base+"/metrics", token, "baton_webhook_requests_total", `code="401"`); n != 6 {
		t.Fatalf("baton_webhook_requests_total{code=401} = %v, want 6", n)
	}
	if code, _ := srv.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
}

// TestTriggersSerialized: webhook requests and a CLI deploy of one
// container at the same moment run one at a time: never more than the old
// container and one new one exist, the journal's deploy windows do not
// overlap, and the requests that arrived during a deploy were coalesced
// into one follow-up deploy.
func TestTriggersSerialized(t *testing.T) {
	e := newEnv(t)
	s := e.service("v1", "v1", map[string]string{"WARMUP": "2s"})
	v2 := e.version("v2", "v2", map[string]string{"WARMUP": "2s"})
	base := len(e.journal())
	dir := t.TempDir()
	token := longSecret("token-")
	writeSecret(t, filepath.Join(dir, "token"), token)
	addr := "127.0.0.1:" + itoa(testenv.FreePort(t))
	srv := e.start("serve", "--listen", addr, "--token-file", filepath.Join(dir, "token"), "--scope", s.scope)
	testenv.WaitHTTP(t, "http://"+addr+"/healthz", 10*time.Second)
	h := &hook{t: t, base: "http://" + addr, token: token}
	load := startLoad(t, s.ng.URL()+"/", 3*time.Minute)

	// Count the service's app containers all along.
	maxApps := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		most := 0
		for {
			select {
			case <-stop:
				maxApps <- most
				return
			case <-time.After(50 * time.Millisecond):
			}
			if n := len(e.appContainersCtx(s.name)); n > most {
				most = n
			}
		}
	}()

	a := h.post(s.name, "bearer", jsonBody(t, map[string]string{"image": v2}))
	cli := make(chan batonRun, 1)
	go func() { cli <- e.runQuiet("deploy", "--image", v2, s.name) }()
	b := h.post(s.name, "bearer", jsonBody(t, map[string]string{"image": s.ref}))
	c := h.post(s.name, "bearer", jsonBody(t, map[string]string{"image": s.ref}))
	for _, r := range []hookReply{a, b, c} {
		if r.code != 202 {
			t.Fatalf("%d %s", r.code, r.raw)
		}
	}
	if a.body["state"] != "running" || b.body["state"] != "queued" || c.body["state"] != "queued" || c.body["run_id"] != b.body["id"] {
		t.Fatalf("want A running, B queued, C coalesced into B's run: %v / %v / %v", a.body, b.body, c.body)
	}
	stA := h.waitDone(a.body["id"].(string), 2*time.Minute)
	stB := h.waitDone(b.body["id"].(string), 2*time.Minute)
	stC := h.waitDone(c.body["id"].(string), 2*time.Minute)
	// A and the CLI deploy race for the service's lock: whichever comes
	// second finds v2 running already. B's run always comes after A's, so it
	// finds v2 and deploys v1.
	if (stA["state"] != "deployed" && stA["state"] != "up-to-date") || stB["state"] != "deployed" || stB["new_image"] != s.ref ||
		stC["run_id"] != b.body["id"] || stC["state"] != stB["state"] {
		t.Fatalf("statuses: %v / %v / %v", stA, stB, stC)
	}
	cr := <-cli
	if cr.code != 0 {
		t.Fatalf("the CLI deploy exited %d: %s", cr.code, cr.stderr)
	}
	close(stop)
	most := <-maxApps
	res := load.Stop()
	testenv.CheckLoad(t, res)

	entries := e.journal()[base:]
	if hooks, clis := entriesBy(entries, "webhook"), entriesBy(entries, "cli"); len(hooks) != 2 || len(clis) != 1 || len(entries) != 3 {
		t.Fatalf("journal: %d webhook, %d cli of %d entries; want 2 webhook runs (B and C coalesced) and 1 cli", len(hooks), len(clis), len(entries))
	}
	if reqs := entriesBy(entries, "webhook")[1].Requests; len(reqs) != 2 || reqs[0] != b.body["id"] || reqs[1] != c.body["id"] {
		t.Fatalf("the follow-up run served %v, want B and C", reqs)
	}
	// The windows in which the deploys changed anything (after taking the
	// service lock) must not overlap.
	for i := range entries {
		for j := range entries {
			if i == j {
				continue
			}
			si, ei := entries[i].StartedAt.Add(entries[i].Waited), entries[i].FinishedAt
			sj := entries[j].StartedAt.Add(entries[j].Waited)
			if !sj.Before(si) && sj.Before(ei) {
				t.Fatalf("deploys overlap: %s %s [%s, %s] and %s %s starting %s",
					entries[i].Trigger, entries[i].ID, si.Format("15:04:05.000"), ei.Format("15:04:05.000"), entries[j].Trigger, entries[j].ID, sj.Format("15:04:05.000"))
			}
		}
	}
	for _, en := range entries {
		t.Logf("%s %s %s: %s + waited %s, took %s, %s", en.Trigger, en.ID, en.Outcome, en.StartedAt.Format("15:04:05.000"), en.Waited.Round(time.Millisecond), en.Duration.Round(time.Millisecond), en.NewImage)
	}
	if most > 2 {
		t.Fatalf("%d app containers of %s existed at once; one deploy at a time allows 2", most, s.name)
	}
	if most < 2 {
		t.Fatalf("never saw a deploy's new container (max %d app containers): the monitor did not work", most)
	}
	if code, _ := srv.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}

// TestKilledWatcherLeavesNoStuckLock SIGKILLs baton watch in the middle of a
// deploy: the service's lock is free at once, and the next baton deploy
// converges the leftovers and deploys, with zero failed requests.
func TestKilledWatcherLeavesNoStuckLock(t *testing.T) {
	e := newEnv(t)
	s := e.service("live", "v1", map[string]string{"WARMUP": "3s"})
	load := startLoad(t, s.ng.URL()+"/", 3*time.Minute)
	w := e.start("watch", "--interval", "1s", "--scope", s.scope)
	w.waitLine(10*time.Second, "msg=watching")
	e.version("live", "v2", map[string]string{"WARMUP": "3s"})
	w.waitLine(60*time.Second, "phase=warm")
	if code, _ := w.stop(syscall.SIGKILL, 10*time.Second); code != -int(syscall.SIGKILL) {
		t.Fatalf("watch exit %d, want killed", code)
	}
	if recs, _ := filepath.Glob(filepath.Join(e.engineState(), "deploys", "*.json")); len(recs) != 1 {
		t.Fatalf("want the interrupted deploy's record, found %v", recs)
	}
	st := e.stateDirHandle()
	unlock, ok, err := st.TryLock(s.name)
	if err != nil || !ok {
		t.Fatalf("the killed watcher left the lock of %s held: ok=%v err=%v", s.name, ok, err)
	}
	unlock()
	r := e.run("deploy", s.name)
	if r.code != 0 || !strings.Contains(r.stderr, "interrupted deploy") {
		t.Fatalf("deploy after the kill: exit %d, stderr %q", r.code, r.stderr)
	}
	if r.took > 2*time.Minute {
		t.Fatalf("deploy after the kill took %s", r.took)
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	e.assertSingle(s.name, s.ref)
	assertServes(t, s.ng.URL()+"/", "v2")
	last := e.journal()[len(e.journal())-1]
	if last.Trigger != "cli" || last.Outcome != "deployed" || last.Recovered == "" {
		t.Fatalf("journal entry of the converging deploy: %+v", last)
	}
}

// TestHistory: every CLI deploy and rollback is journaled, successful or
// not, and baton history shows them as a table and as JSON.
func TestHistory(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	e.mustDeploy("--image", v2, name)
	e.mustDeploy("--image", v2, name)
	missing := e.reg.Addr() + "/" + e.repo + ":no-such-tag"
	if r := e.run("deploy", "--image", missing, name); r.code != 1 {
		t.Fatalf("deploy of a missing tag exited %d", r.code)
	}
	if r := e.run("rollback", name); r.code != 0 {
		t.Fatalf("rollback exited %d: %s", r.code, r.stderr)
	}
	if r := e.run("deploy", "no-such-"+name); r.code != 2 {
		t.Fatalf("deploy of a missing container exited %d", r.code)
	}

	r := e.run("history", "--json", "--limit", "0")
	if r.code != 0 {
		t.Fatalf("history --json exited %d", r.code)
	}
	var entries []journal.Entry
	decodeJSON(t, r.stdout, &entries)
	want := []struct {
		trigger, outcome, image string
		code                    int
		failed                  bool
	}{
		{"cli", "deployed", v2, 0, false},
		{"cli", "up-to-date", v2, 0, false},
		{"cli", "failed", missing, 1, true},
		{"rollback", "deployed", v1, 0, false},
		{"cli", "failed", "", 2, true},
	}
	if len(entries) != len(want) {
		t.Fatalf("history has %d entries, want %d:\n%s", len(entries), len(want), r.stdout)
	}
	for i, w := range want {
		en := entries[i]
		if en.Trigger != w.trigger || en.Outcome != w.outcome || en.NewImage != w.image || en.ExitCode != w.code ||
			(en.Error != "") != w.failed || en.Who == "" || en.ID == "" || en.StartedAt.IsZero() || en.Duration <= 0 {
			t.Fatalf("entry %d: %+v, want %+v", i, en, w)
		}
		if i < 4 && (en.OldImage == "" || en.Container != name) {
			t.Fatalf("entry %d lacks the old image or container: %+v", i, en)
		}
	}
	if entries[0].OldImage != v1 || entries[0].NewImageID == entries[0].OldImageID {
		t.Fatalf("entry 0: %+v", entries[0])
	}
	r = e.run("history", name)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 5 || !strings.Contains(r.stdout, "rollback") || !strings.Contains(r.stdout, v1+" -> "+v2) {
		t.Fatalf("history %s: exit %d\n%s", name, r.code, r.stdout)
	}
	r = e.run("history", "--limit", "1", "--json", name)
	decodeJSON(t, r.stdout, &entries)
	if len(entries) != 1 || entries[0].Trigger != "rollback" {
		t.Fatalf("history --limit 1: %+v", entries)
	}
	if r = e.run("history", "nothing-here"); r.code != 0 || !strings.Contains(r.stdout, "no deploys of nothing-here") {
		t.Fatalf("history of an unknown target: %d %q", r.code, r.stdout)
	}
}

// TestServeSIGTERMFinishesDeploy: SIGTERM during a webhook deploy lets it
// finish, then serve exits 0; past --shutdown-timeout the deploy is
// cancelled, rolls back (the old container never stopped serving) and serve
// exits 1. Either way nothing is left half-done.
func TestServeSIGTERMFinishesDeploy(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	slow := e.version("slow", "v2", map[string]string{"WARMUP": "4s"})
	never := e.version("never", "v3", map[string]string{"WARMUP": "60s"})
	name := testenv.UniqueName("web-")
	e.runLabelled(name, v1, map[string]string{"baton.enable": "true"})
	dir := t.TempDir()
	token := longSecret("token-")
	writeSecret(t, filepath.Join(dir, "token"), token)

	startServe := func(bound string) (*batonProc, *hook) {
		addr := "127.0.0.1:" + itoa(testenv.FreePort(t))
		srv := e.start("serve", "--listen", addr, "--token-file", filepath.Join(dir, "token"), "--shutdown-timeout", bound)
		testenv.WaitHTTP(t, "http://"+addr+"/healthz", 10*time.Second)
		return srv, &hook{t: t, base: "http://" + addr, token: token}
	}

	srv, h := startServe("2m")
	if r := h.post(name, "bearer", jsonBody(t, map[string]string{"image": slow})); r.code != 202 {
		t.Fatalf("%d %s", r.code, r.raw)
	}
	srv.waitLine(30*time.Second, "phase=warm") // the new container is warming up
	code, took := srv.stop(syscall.SIGTERM, 2*time.Minute)
	if code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	last := e.journal()[len(e.journal())-1]
	t.Logf("SIGTERM -> exit %s; deploy took %s", took.Round(time.Millisecond), last.Duration.Round(time.Millisecond))
	if last.Outcome != "deployed" || last.NewImage != slow {
		t.Fatalf("the deploy did not complete: %+v", last)
	}
	if took < time.Second {
		t.Fatalf("serve exited %s after SIGTERM: it did not wait for the deploy", took)
	}
	e.assertSingle(name, slow)

	srv, h = startServe("2s")
	if r := h.post(name, "bearer", jsonBody(t, map[string]string{"image": never})); r.code != 202 {
		t.Fatalf("%d %s", r.code, r.raw)
	}
	srv.waitLine(30*time.Second, "phase=warm")
	code, took = srv.stop(syscall.SIGTERM, time.Minute)
	t.Logf("bound 2s: SIGTERM -> exit %d in %s", code, took.Round(time.Millisecond))
	if code != 1 || took > 30*time.Second {
		t.Fatalf("serve past its shutdown bound: exit %d after %s, want 1 soon after the 2s bound", code, took)
	}
	last = e.journal()[len(e.journal())-1]
	if last.Outcome != "failed" || !last.OldServing || last.ExitCode != 1 {
		t.Fatalf("the cancelled deploy: %+v", last)
	}
	e.assertSingle(name, slow)
}

// longSecret is a unique secret of the length baton serve requires.
func longSecret(prefix string) string {
	return testenv.UniqueName(prefix+testenv.UniqueName("")) + "-0123456789"
}

func writeSecret(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
