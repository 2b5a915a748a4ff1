package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/baton-sh/baton/internal/testenv"
)

// hostile is an image whose author labelled it as baton's app of a service,
// with settings, identity labels, opt-in labels and a reload command that
// would leave a marker file on the host.
type hostile struct {
	ref    string // in the test registry, so a watcher could see its tag move
	marker string // the file the reload command would create
	upPath string // the upstream file it names, outside every allowed directory
}

func (e *env) hostileImage(tag, service, scope string) hostile {
	e.t.Helper()
	h := hostile{
		marker: filepath.Join(e.t.TempDir(), "pwned"),
		upPath: "/baton-hostile-" + strings.ToLower(testenv.UniqueName("")) + ".conf",
	}
	labels := map[string]string{
		"baton.role": "app", "baton.managed": "true", "baton.service": service,
		"baton.relay": "false", "baton.port": "8080", "baton.nginx-upstream": h.upPath,
		"baton.nginx-reload": "touch " + h.marker,
		"baton.deploy-id":    "abcdef", "baton.replaces": "0123456789ab",
		"baton.previous-image": "evil:0", "baton.previous-image-id": "sha256:" + strings.Repeat("e", 64),
		"baton.enable": "true", "baton.scope": scope, "baton.http-probe": "/nope",
	}
	local, _ := testenv.DemoImage(e.t, e.cli, testenv.DemoImageOpts{Version: "evil", Env: map[string]string{"WARMUP": "1s"}, HealthCheck: true, Labels: labels})
	h.ref = e.reg.Push(e.t, e.cli, local, e.repo+"-evil:"+tag)
	if _, err := e.cli.ImageRemove(e.t.Context(), h.ref, image.RemoveOptions{}); err != nil {
		e.t.Fatalf("untagging %s: %v", h.ref, err)
	}
	e.pull(h.ref, "")
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(e.t.Context()), time.Minute)
		defer cancel()
		_, _ = e.cli.ImageRemove(ctx, h.ref, image.RemoveOptions{Force: true})
	})
	return h
}

func (h hostile) assertNothingRan(t *testing.T) {
	t.Helper()
	for _, p := range []string{h.marker, h.upPath} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s exists (%v): baton followed a hostile image's label", p, err)
		}
	}
}

// snapshot is what must not change about a container baton must leave alone.
type snapshot struct {
	id, name, status, started string
	nets                      []string
}

func (e *env) snapshot(ref string) snapshot {
	e.t.Helper()
	c := e.inspect(ref)
	s := snapshot{id: c.ID, name: c.Name, status: c.State.Status, started: c.State.StartedAt}
	for n := range c.NetworkSettings.Networks {
		s.nets = append(s.nets, n)
	}
	slices.Sort(s.nets)
	return s
}

func (e *env) assertSnapshot(want snapshot) {
	e.t.Helper()
	got := e.snapshot(want.id)
	if got.id != want.id || got.name != want.name || got.status != want.status || got.started != want.started || !slices.Equal(got.nets, want.nets) {
		e.t.Fatalf("hostile container changed: was %+v, now %+v", want, got)
	}
}

// TestHostileContainerIsLeftAlone: containers from an image that labels
// itself as baton's app (of another service, and of the managed service
// itself, running and stopped), with a reload command, an upstream path
// and opt-in labels, run next to a managed service while status, deploy,
// watch and serve run. The reload command never runs, no upstream file
// appears, the hostile containers are never renamed, removed, started or
// attached, and the managed service still deploys with zero failed
// requests (the positive control).
func TestHostileContainerIsLeftAlone(t *testing.T) {
	e := newEnv(t)
	s := e.service("live", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	foreign := e.hostileImage("zz", "zz-"+strings.ToLower(testenv.UniqueName("")), s.scope)
	claimer := e.hostileImage("web", s.name, s.scope)

	evilZZ := testenv.UniqueName("evil-zz-")
	evilWeb := testenv.UniqueName("evil-web-")
	evilStopped := testenv.UniqueName("evil-stopped-")
	for _, c := range []struct{ name, ref string }{{evilZZ, foreign.ref}, {evilWeb, claimer.ref}, {evilStopped, claimer.ref}} {
		id := testenv.RunDemo(t, e.cli, testenv.RunOpts{Name: c.name, Image: c.ref, Network: e.net})
		testenv.WaitHealthy(t, e.cli, id, 60*time.Second)
	}
	if err := e.cli.ContainerStop(t.Context(), evilStopped, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	snaps := []snapshot{e.snapshot(evilZZ), e.snapshot(evilWeb), e.snapshot(evilStopped)}
	check := func(when string) {
		t.Helper()
		for _, sn := range snaps {
			e.assertSnapshot(sn)
		}
		foreign.assertNothingRan(t)
		claimer.assertNothingRan(t)
		t.Logf("%s: hostile containers untouched, nothing ran", when)
	}

	// status, as the boot unit runs it: the hostile containers are not
	// services, and it says which image labels it ignored.
	r := e.run("status")
	if r.code != 0 || strings.Contains(r.stdout, "zz-") {
		t.Fatalf("status: exit %d, stdout %s", r.code, r.stdout)
	}
	if !strings.Contains(r.stderr, "ignoring container "+evilZZ) {
		t.Fatalf("status does not say it ignored %s's image labels: %s", evilZZ, r.stderr)
	}
	r = e.run("status", evilZZ)
	if r.code != 0 || !strings.Contains(r.stderr, "ignored image labels") || !strings.Contains(r.stderr, "baton.nginx-reload=touch "+foreign.marker) {
		t.Fatalf("status %s: exit %d, stderr %s", evilZZ, r.code, r.stderr)
	}
	r = e.run("deploy", "--dry-run", evilZZ)
	if r.code != 0 || !strings.Contains(r.stdout, "ignored image labels") {
		t.Fatalf("dry run of %s: exit %d, stdout %s", evilZZ, r.code, r.stdout)
	}
	check("after status")

	// The managed service deploys under load (positive control), with the
	// stopped claimer of its name beside it.
	load := startLoad(t, s.ng.URL()+"/", 3*time.Minute)
	e.mustDeploy("--image", v2, s.name)
	assertServes(t, s.ng.URL()+"/", "v2")
	check("after deploy")

	// watch: the hostile image's opt-in labels name the watcher's scope,
	// and its tag moves in the registry, as the service's does.
	metricsURL := "http://127.0.0.1:" + itoa(testenv.FreePort(t))
	w := e.start("watch", "--interval", "1s", "--scope", s.scope, "--metrics-listen", strings.TrimPrefix(metricsURL, "http://"))
	w.waitLine(10*time.Second, "msg=metrics")
	e.hostileImage("zz", "zz-moved", s.scope) // the foreign container's tag now names another build
	e.version("v2", "v3", nil)                // the tag the service runs now moves
	waitFor(t, 90*time.Second, "watch deploys the managed service", func() bool { return len(entriesBy(e.journal(), "watch")) == 1 })
	if en := entriesBy(e.journal(), "watch")[0]; en.Outcome != "deployed" || en.Target != s.name {
		t.Fatalf("watch journal entry %+v", en)
	}
	for _, name := range []string{evilZZ, evilWeb, evilStopped} {
		if n := metric(t, metricsURL+"/metrics", "baton_watch_checks_total", `target="`+name+`"`); n != 0 {
			t.Fatalf("the watcher checked %s, opted in only by its image (%v checks)", name, n)
		}
	}
	if code, _ := w.stop(syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Fatalf("watch exited %d", code)
	}
	check("after watch")

	// serve: a request for a hostile container is refused (its opt-in is
	// the image's); one for the service deploys.
	dir := t.TempDir()
	token := strings.Repeat("t", 8) + testenv.UniqueName("token-")
	writeSecret(t, filepath.Join(dir, "token"), token)
	writeSecret(t, filepath.Join(dir, "secret"), strings.Repeat("s", 8)+testenv.UniqueName("secret-"))
	addr := "127.0.0.1:" + itoa(testenv.FreePort(t))
	srv := e.start("serve", "--listen", addr, "--token-file", filepath.Join(dir, "token"), "--secret-file", filepath.Join(dir, "secret"), "--scope", s.scope)
	testenv.WaitHTTP(t, "http://"+addr+"/healthz", 10*time.Second)
	h := &hook{t: t, base: "http://" + addr, token: token}
	for _, name := range []string{evilZZ, evilWeb} {
		if rep := h.post(name, "bearer", jsonBody(t, map[string]string{"image": foreign.ref})); rep.code != 403 {
			t.Fatalf("webhook for %s: %d %s, want 403", name, rep.code, rep.raw)
		}
	}
	rep := h.post(s.name, "bearer", jsonBody(t, map[string]string{"image": s.ref}))
	if rep.code != 202 {
		t.Fatalf("webhook for the service (positive control): %d %s", rep.code, rep.raw)
	}
	if st := h.waitDone(rep.body["id"].(string), 90*time.Second); st["state"] != "deployed" {
		t.Fatalf("webhook deploy: %v", st)
	}
	if code, _ := srv.stop(syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)

	r = e.run("status")
	if r.code != 0 {
		t.Fatalf("final status: exit %d", r.code)
	}
	check("at the end")
	if c := e.inspect(s.name); !c.State.Running || c.Config.Image != s.ref {
		t.Fatalf("%s runs %s (%s), want %s", s.name, c.Config.Image, c.State.Status, s.ref)
	}
	if v := res.Versions(); v["v1"] == 0 || v["v2"] == 0 || v["v3"] == 0 || v["evil"] != 0 {
		t.Fatalf("versions served %v; want v1, v2, v3 and never the hostile containers", v)
	}
}

// TestHostileImageDeployedOntoService: the hostile image deployed onto an
// opted-in service (as a webhook or a registry push would) deploys with
// zero failed requests; its labels are ignored, now and at the next deploy
// and status, and its reload command never runs.
func TestHostileImageDeployedOntoService(t *testing.T) {
	e := newEnv(t)
	s := e.service("live", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	evil := e.hostileImage("x", s.name, s.scope)
	upstreamBefore, err := os.ReadFile(s.ng.UpstreamFile())
	if err != nil {
		t.Fatal(err)
	}

	load := startLoad(t, s.ng.URL()+"/", 3*time.Minute)
	r := e.mustDeploy("--image", evil.ref, s.name)
	if !strings.Contains(r.stderr, "ignoring labels that image") {
		t.Fatalf("the deploy does not say it ignored the image's labels: %s", r.stderr)
	}
	assertServes(t, s.ng.URL()+"/", "evil")
	evil.assertNothingRan(t)

	// The next status and deploy read the new container's labels (the
	// image's): ignored, the relay and the operator's settings stay.
	r = e.run("status", s.name)
	if r.code != 0 || !strings.Contains(r.stderr, "ignored image labels") || strings.Contains(r.stderr, "problem") {
		t.Fatalf("status after the hostile image: exit %d, stderr %s", r.code, r.stderr)
	}
	r = e.run("deploy", "--dry-run", "--image", v2, s.name)
	if r.code != 0 || !strings.Contains(r.stdout, "baton relay") || !strings.Contains(r.stdout, "http-probe=/healthz") {
		t.Fatalf("dry run after the hostile image: exit %d, stdout %s", r.code, r.stdout)
	}
	e.mustDeploy("--image", v2, s.name)
	res := load.Stop()
	testenv.CheckLoad(t, res)
	evil.assertNothingRan(t)
	assertServes(t, s.ng.URL()+"/", "v2")
	if res.Versions()["evil"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v", res.Versions())
	}
	// The upstream file still names the relay: no switch to reload mode.
	if after, _ := os.ReadFile(s.ng.UpstreamFile()); string(after) != string(upstreamBefore) {
		t.Fatalf("upstream file changed from %q to %q", upstreamBefore, after)
	}
}

// TestUpstreamAndReloadRefused: an upstream file outside the allowed
// directories, or behind a symlinked directory, and a reload command in a
// label are refused with exit 2 and one line naming what to do; nothing is
// written, nothing runs, the container is unchanged. Positive controls: the
// same container deploys (dry run) with an allowed path and the command as a
// flag.
func TestUpstreamAndReloadRefused(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	name := testenv.UniqueName("web-")
	marker := filepath.Join(t.TempDir(), "ran")
	outside := "/etc/baton-test-" + strings.ToLower(testenv.UniqueName("")) + "/web.conf"
	e.runLabelled(name, v1, map[string]string{"baton.nginx-reload": "touch " + marker})
	before := e.inspect(name)

	tmp := t.TempDir()
	real := filepath.Join(tmp, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(tmp, "link")); err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(tmp, "ok", "web.conf")
	for _, c := range []struct {
		what    string
		args    []string
		wantErr string
	}{
		{"upstream outside the allowed directories", []string{"--nginx-upstream", outside, "--nginx-reload", "true"}, "is outside the directories baton may write upstream files in"},
		{"upstream through a symlinked directory", []string{"--nginx-upstream", filepath.Join(tmp, "link", "web.conf"), "--nginx-reload", "true"}, "is a symbolic link"},
		{"reload command from a label", []string{"--nginx-upstream", allowed}, "label baton.nginx-reload=\"touch " + marker + "\": baton takes no command from a label; pass --nginx-reload CMD"},
	} {
		r := e.run(append(append([]string{"deploy"}, c.args...), name)...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 2 || !strings.Contains(lines[len(lines)-1], c.wantErr) {
			t.Fatalf("%s: exit %d, stderr %q; want exit 2 saying %q", c.what, r.code, r.stderr, c.wantErr)
		}
	}
	for _, p := range []string{outside, filepath.Dir(outside), marker, filepath.Join(real, "web.conf"), allowed} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s exists after refused deploys (%v)", p, err)
		}
	}
	if c := e.inspect(name); c.ID != before.ID || c.State.StartedAt != before.State.StartedAt || len(c.NetworkSettings.Networks) != len(before.NetworkSettings.Networks) {
		t.Fatal("a refused deploy changed the container")
	}
	// Positive control: an allowed path and the command as a flag.
	r := e.run("deploy", "--dry-run", "--nginx-upstream", allowed, "--nginx-reload", "nginx -s reload", name)
	if r.code != 0 || !strings.Contains(r.stdout, allowed) {
		t.Fatalf("dry run with an allowed path and the flag: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
}
