package deploy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/baton-sh/baton/dockerctl"

	"github.com/baton-sh/baton/internal/state"
)

type harness struct {
	t       *testing.T
	eng     *fakeEngine
	traffic *fakeTraffic
	d       *Deployer
	oldID   string
	events  []Event
}

// newHarness runs "web" on v1 (healthy image) behind the given traffic mode,
// publishing hostPort when not empty.
func newHarness(t *testing.T, mode, hostPort string) *harness {
	t.Helper()
	eng := newFakeEngine()
	eng.addImage("web:v1", "v1", "healthy")
	eng.addImage("web:v2", "v2", "healthy")
	eng.addImage("web:sick", "sick", "unhealthy")
	eng.addImage("web:crash", "crash", "crash")
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, eng: eng, traffic: &fakeTraffic{mode: mode, eng: eng}}
	h.d = &Deployer{Engine: eng, State: st, Traffic: h.traffic.factory,
		Report: ReporterFunc(func(e Event) { h.events = append(h.events, e) }),
		Policy: Policy{UpstreamDirs: []string{"/tmp"}},
		HostPortFree: func(ip, port, _ string) bool {
			eng.mu.Lock()
			defer eng.mu.Unlock()
			return !eng.portHeld(ip+":"+port, "")
		}}
	h.oldID = eng.runOld("web", "web:v1", hostPort, "shop")
	return h
}

func (h *harness) deploy(ctx context.Context, image string, flags map[string]string) (*Result, error) {
	h.t.Helper()
	return h.d.Deploy(ctx, Request{Target: "web", Image: image, Pull: PullMissing, Flags: flags})
}

// assertOldServing checks the failure left the old container untouched.
func (h *harness) assertOldServing() {
	h.t.Helper()
	if st := h.eng.state(h.oldID); st != "running" {
		h.t.Fatalf("old container is %s, want running", st)
	}
	if img := h.eng.imageOf("web"); img != "web:v1" {
		h.t.Fatalf("web runs %q, want web:v1", img)
	}
	if n := h.eng.count(); n != 1 {
		h.t.Fatalf("%d containers left, want only the old one: %v", n, h.eng.calls())
	}
	if cur := h.traffic.target(); h.traffic.mode != "none" && cur != "" && cur != h.oldID {
		h.t.Fatalf("traffic goes to %s, want the old container", h.traffic.target())
	}
	var rec Record
	if found, _ := h.d.State.ReadRecord("web", &rec); found {
		h.t.Fatalf("deploy record left behind: %+v", rec)
	}
}

func indexOf(t *testing.T, calls []string, prefix string) int {
	t.Helper()
	i := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, prefix) })
	if i < 0 {
		t.Fatalf("no call %q in %v", prefix, calls)
	}
	return i
}

func TestDeployReplacesContainerBehindRelay(t *testing.T) {
	h := newHarness(t, "relay", "")
	res, err := h.deploy(t.Context(), "web:v2", map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if res.Outcome != OutcomeDeployed || ExitCode(err) != 0 {
		t.Fatalf("outcome %s", res.Outcome)
	}
	if img := h.eng.imageOf("web"); img != "web:v2" {
		t.Fatalf("web runs %q, want web:v2", img)
	}
	if st := h.eng.state(h.oldID); st != "missing" {
		t.Fatalf("old container is %s, want removed", st)
	}
	newC, _ := h.eng.ContainerInspect(t.Context(), "web")
	if h.traffic.target() != newC.ID {
		t.Fatalf("traffic goes to %s, want the new container %s", h.traffic.target(), newC.ID)
	}
	if got := newC.Config.Labels[LabelPreviousImage]; got != "web:v1" {
		t.Fatalf("previous-image label %q", got)
	}
	if got := newC.Config.Labels["baton.nginx-upstream"]; got != "/etc/nginx/baton/x.conf" {
		t.Fatalf("settings not recorded on the new container: %v", newC.Config.Labels)
	}
	if newC.Config.Labels["baton.enable"] != "true" || newC.Config.Labels["baton.stateful"] != "false" {
		t.Fatalf("the user's baton.* labels did not survive the deploy: %v", newC.Config.Labels)
	}
	if newC.Config.Labels["app"] != "shop" || !slices.Contains(newC.Config.Env, "DB=postgres://db") {
		t.Fatalf("user config not cloned: labels %v env %v", newC.Config.Labels, newC.Config.Env)
	}
	calls := h.eng.calls()
	// Healthy before traffic moves, traffic moved before the old one stops.
	if !(indexOf(t, calls, "start web-baton-") < indexOf(t, calls, "stop web")) {
		t.Fatalf("order wrong: %v", calls)
	}
	tl := h.traffic.log
	sw := slices.IndexFunc(tl, func(s string) bool { return strings.HasPrefix(s, "switch web -> web-baton-") })
	dr := slices.Index(tl, "drain web")
	if sw < 0 || dr < sw {
		t.Fatalf("traffic log %v: want switch then drain", tl)
	}
	var rec Record
	if found, _ := h.d.State.ReadRecord("web", &rec); found {
		t.Fatalf("record left after success: %+v", rec)
	}
}

func TestDeployHandsOverPublishedPortAfterOldStops(t *testing.T) {
	h := newHarness(t, "none", "8080")
	if _, err := h.deploy(t.Context(), "web:v2", nil); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	calls := h.eng.calls()
	stop := indexOf(t, calls, "stop web")
	connect := slices.IndexFunc(calls, func(c string) bool {
		return strings.HasPrefix(c, "connect web-baton-") && strings.HasSuffix(c, " shop")
	})
	for _, c := range calls[:stop] {
		if strings.HasPrefix(c, "connect web-baton-") && strings.HasSuffix(c, " shop") {
			t.Fatalf("connected to shop before the old container stopped: %v", calls)
		}
	}
	if connect < stop || !strings.HasSuffix(calls[connect], " shop") {
		t.Fatalf("want connect to shop after stop: %v", calls)
	}
	if len(h.eng.brokenConns) > 0 {
		t.Fatalf("a connect hit a held port: %v", h.eng.brokenConns)
	}
	c, _ := h.eng.ContainerInspect(t.Context(), "web")
	if _, ok := c.NetworkSettings.Networks["shop"]; !ok {
		t.Fatalf("new container not on shop: %v", c.NetworkSettings.Networks)
	}
	if !slices.Contains(c.NetworkSettings.Networks["shop"].Aliases, "web-alias") {
		t.Fatalf("alias lost: %v", c.NetworkSettings.Networks["shop"].Aliases)
	}
	h.eng.mu.Lock()
	pub := h.eng.containers[c.ID].published
	h.eng.mu.Unlock()
	if !slices.Equal(pub, []string{"127.0.0.1:8080"}) {
		t.Fatalf("new container publishes %v, want the old port", pub)
	}
}

func TestDeployWithoutPublishedPortJoinsNetworksBeforeStart(t *testing.T) {
	h := newHarness(t, "none", "")
	if _, err := h.deploy(t.Context(), "web:v2", nil); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	calls := h.eng.calls()
	if indexOf(t, calls, "start web-baton-") > indexOf(t, calls, "stop web") {
		t.Fatalf("order: %v", calls)
	}
	c, _ := h.eng.ContainerInspect(t.Context(), "web")
	if string(c.HostConfig.NetworkMode) != "shop" {
		t.Fatalf("primary network %q, want shop (the user's)", c.HostConfig.NetworkMode)
	}
	if _, ok := c.NetworkSettings.Networks["baton-svc-web"]; !ok {
		t.Fatalf("not on its service's network: %v", c.NetworkSettings.Networks)
	}
}

func TestDeployFailuresLeaveOldServing(t *testing.T) {
	cases := []struct {
		name     string
		image    string
		setup    func(h *harness)
		wantCode int
		wantMsg  string
	}{
		{name: "never healthy", image: "web:sick", wantCode: 1, wantMsg: "unhealthy"},
		{name: "crash at start", image: "web:crash", wantCode: 1, wantMsg: "exited"},
		{name: "image missing", image: "web:nope", wantCode: 1, wantMsg: "manifest unknown"},
		{name: "pull fails", image: "web:v2", setup: func(h *harness) { h.eng.pullErr = errors.New("registry down") }, wantCode: 1, wantMsg: "registry down"},
		{name: "create fails", image: "web:v2", setup: func(h *harness) { h.eng.createErr = errors.New("no space left") }, wantCode: 1, wantMsg: "no space left"},
		{name: "start fails", image: "web:v2", setup: func(h *harness) { h.eng.startErr["web:v2"] = errors.New("port is already allocated") }, wantCode: 1, wantMsg: "port is already allocated"},
		{name: "switch fails", image: "web:v2", setup: func(h *harness) { h.traffic.switchErr = errors.New("relay down") }, wantCode: 1, wantMsg: "relay down"},
		{name: "bad image reference", image: "Web:UPPER CASE", wantCode: 2, wantMsg: "not a valid image reference"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "relay", "")
			if tc.setup != nil {
				tc.setup(h)
			}
			pull := PullAlways
			if tc.name == "never healthy" || tc.name == "crash at start" {
				pull = PullMissing
			}
			res, err := h.d.Deploy(t.Context(), Request{Target: "web", Image: tc.image, Pull: pull,
				Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true", "health-timeout": "2s"}})
			if err == nil {
				t.Fatal("deploy succeeded, want failure")
			}
			if got := ExitCode(err); got != tc.wantCode {
				t.Fatalf("exit code %d, want %d (%v)", got, tc.wantCode, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not say %q", err, tc.wantMsg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if res.Outcome != OutcomeFailed || !res.OldServing || res.ExitCode != tc.wantCode {
				t.Fatalf("result %+v", res)
			}
			h.assertOldServing()
		})
	}
}

func TestDeployBadTargets(t *testing.T) {
	h := newHarness(t, "none", "")
	_, err := h.d.Deploy(t.Context(), Request{Target: "nope", Image: "web:v2"})
	if ExitCode(err) != 2 || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("missing target: %v (exit %d)", err, ExitCode(err))
	}
	if err := h.eng.ContainerStop(t.Context(), "web", container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = h.d.Deploy(t.Context(), Request{Target: "web", Image: "web:v2"})
	if ExitCode(err) != 2 || !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "docker start web") {
		t.Fatalf("stopped target: %v (exit %d)", err, ExitCode(err))
	}
	if h.eng.count() != 1 {
		t.Fatalf("something was created: %v", h.eng.calls())
	}
}

func TestDeployUpToDateIsNoOp(t *testing.T) {
	h := newHarness(t, "none", "")
	res, err := h.deploy(t.Context(), "web:v1", nil)
	if err != nil || res.Outcome != OutcomeUpToDate {
		t.Fatalf("got %v %v, want up to date", res.Outcome, err)
	}
	for _, c := range h.eng.calls() {
		if strings.HasPrefix(c, "create") || strings.HasPrefix(c, "stop") {
			t.Fatalf("no-op deploy changed containers: %v", h.eng.calls())
		}
	}
	res, err = h.d.Deploy(t.Context(), Request{Target: "web", Image: "web:v1", Pull: PullMissing, Force: true})
	if err != nil || res.Outcome != OutcomeDeployed {
		t.Fatalf("--force: %v %v", res.Outcome, err)
	}
}

func TestDeployCancelledWhileWarmingRollsBack(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.eng.addImage("web:slow", "slow", "starting") // never reports health
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for h.eng.state("web") == "running" && !slices.ContainsFunc(h.eng.calls(), func(c string) bool { return strings.HasPrefix(c, "start web-baton-") }) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := h.d.Deploy(ctx, Request{Target: "web", Image: "web:slow", Pull: PullMissing,
		Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"}})
	if ExitCode(err) != 1 || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("got %v (exit %d), want a cancelled deploy with exit 1", err, ExitCode(err))
	}
	h.assertOldServing()
}

func TestDeployHandoverFailureRestartsOld(t *testing.T) {
	h := newHarness(t, "none", "8080")
	h.eng.connectErr["shop"] = errors.New("network shop not found")
	_, err := h.deploy(t.Context(), "web:v2", nil)
	if ExitCode(err) != 3 || !errors.Is(err, ErrOldStopped) {
		t.Fatalf("got %v (exit %d), want exit 3", err, ExitCode(err))
	}
	if !strings.Contains(err.Error(), "started again") {
		t.Fatalf("error does not say the old container was restarted: %v", err)
	}
	if st := h.eng.state(h.oldID); st != "running" {
		t.Fatalf("old container %s, want restarted", st)
	}
}

// TestDryRunPlansAndChangesNothing: a dry run reports the plan, built by the
// caller's Spec when it has one, and makes no engine call that changes
// anything.
func TestDryRunPlansAndChangesNothing(t *testing.T) {
	addEnv := func(_ context.Context, old container.InspectResponse, oldImg, newImg image.InspectResponse, ref string) (*dockerctl.CloneSpec, string, error) {
		spec, err := dockerctl.CloneConfig(old, oldImg, newImg, ref)
		if err != nil {
			return nil, "", err
		}
		spec.Config.Env = append(spec.Config.Env, "FROM_FILE=yes")
		spec.Rediff(old, oldImg, newImg)
		return spec, "following the file", nil
	}
	for _, tc := range []struct {
		name         string
		image        string
		spec         SpecFunc
		changed      string
		wantUpToDate bool
		wantFollows  string
		wantChange   string
	}{
		{name: "new image", image: "web:v2", wantChange: "image"},
		{name: "same image", image: "web:v1", wantUpToDate: true},
		{name: "same image, caller's configuration changed", image: "web:v1", spec: addEnv, changed: "the compose file changed", wantFollows: "following the file", wantChange: "env FROM_FILE"},
		{name: "new image through caller's spec", image: "web:v2", spec: addEnv, wantFollows: "following the file", wantChange: "env FROM_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "relay", "")
			res, err := h.d.Deploy(t.Context(), Request{Target: "web", Image: tc.image, Pull: PullMissing, DryRun: true, Spec: tc.spec, Changed: tc.changed})
			if err != nil || res.Outcome != OutcomeDryRun || res.Plan == nil {
				t.Fatalf("got %v %v, want a dry-run plan", res.Outcome, err)
			}
			p := res.Plan
			if p.UpToDate != tc.wantUpToDate {
				t.Fatalf("up to date = %v, want %v (steps %v)", p.UpToDate, tc.wantUpToDate, p.Steps)
			}
			if p.Follows != tc.wantFollows {
				t.Fatalf("follows %q, want %q", p.Follows, tc.wantFollows)
			}
			if tc.wantChange != "" && !slices.ContainsFunc(p.Changes, func(d dockerctl.FieldDiff) bool { return d.Field == tc.wantChange }) {
				t.Fatalf("changes %v lack %q", p.Changes, tc.wantChange)
			}
			if tc.changed != "" && !slices.ContainsFunc(p.Steps, func(s string) bool { return strings.Contains(s, tc.changed) }) {
				t.Fatalf("steps %v do not say why it redeploys", p.Steps)
			}
			for _, c := range h.eng.calls() {
				for _, verb := range []string{"create", "start", "stop", "remove", "rename", "connect", "pull"} {
					if strings.HasPrefix(c, verb) {
						t.Fatalf("dry run changed something: %v", h.eng.calls())
					}
				}
			}
			h.assertOldServing()
		})
	}
}

// TestDeployWithHostPortReachesPeersWhileWarming: a container whose host
// port the old one still holds warms up without its real network, on an
// internal copy of it that its peers (a database) are attached to. The copy
// stays (connections opened through it must survive the deploy), is reused
// by the next deploy, and goes once the network it copies is gone.
func TestDeployWithHostPortReachesPeersWhileWarming(t *testing.T) {
	for _, image := range []string{"web:v2", "web:sick"} {
		t.Run(image, func(t *testing.T) {
			h := newHarness(t, "none", "8080")
			h.eng.runOld("db", "web:v1", "", "shop")
			_, err := h.deploy(t.Context(), image, map[string]string{"health-timeout": "2s"})
			if (err == nil) != (image == "web:v2") {
				t.Fatalf("deploy of %s: %v", image, err)
			}
			warm := dockerctl.MirrorName("web", "shop")
			var started []string
			for name, nets := range h.eng.startNets {
				if strings.HasPrefix(name, "web-baton-") {
					started = nets
				}
			}
			if !slices.Equal(started, []string{"baton-svc-web", warm}) {
				t.Fatalf("new container started on %v, want baton-svc-web and %s only (no published port while the old holds it)", started, warm)
			}
			for key, aliases := range h.eng.startAliases {
				if strings.HasPrefix(key, "web-baton-") && strings.HasSuffix(key, " "+warm) && len(aliases) > 0 {
					t.Fatalf("warming container is known on %s as %v; peers must not find it by the service's name", warm, aliases)
				}
			}
			calls := h.eng.calls()
			if m, s := indexOf(t, calls, "mirror shop "+warm), indexOf(t, calls, "start web-baton-"); m > s {
				t.Fatalf("network copied after the start: %v", calls)
			}
			if nets := h.eng.networksOf("db"); !slices.Equal(nets, []string{warm, "shop"}) {
				t.Fatalf("db is on %v, want shop and its copy", nets)
			}
			if len(h.eng.brokenConns) > 0 {
				t.Fatalf("a connect hit a held port: %v", h.eng.brokenConns)
			}
			if image == "web:v2" {
				if nets := h.eng.networksOf("web"); !slices.Equal(nets, []string{"baton-svc-web", warm, "shop"}) {
					t.Fatalf("web serves on %v, want baton-svc-web, shop and the copy it warmed up on", nets)
				}
				// The next deploy reuses the copy.
				if _, err := h.deploy(t.Context(), "web:v1", nil); err != nil {
					t.Fatalf("second deploy: %v", err)
				}
				if n := len(h.eng.netLabels); n != 1 {
					t.Fatalf("%d copies after two deploys, want 1", n)
				}
			}
			// The project is taken down: the next run removes the copy.
			h.eng.mu.Lock()
			delete(h.eng.internal, "shop")
			h.eng.mu.Unlock()
			if _, err := h.d.Status(t.Context(), "", func(Phase, string, string, ...any) {}); err != nil {
				t.Fatalf("status: %v", err)
			}
			if len(h.eng.netLabels) > 0 || slices.Contains(h.eng.networksOf("db"), warm) {
				t.Fatalf("copy of a removed network left: %v, db on %v", h.eng.netLabels, h.eng.networksOf("db"))
			}
		})
	}
}

// TestDeployerSpecForDefinesTheNewContainer: a target whose configuration
// someone else defines (compose) gets it through SpecFor when the request
// brings no Spec, and the note is reported.
func TestDeployerSpecForDefinesTheNewContainer(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.d.SpecFor = func(_ context.Context, old container.InspectResponse, newRef string, dryRun bool, _ func(string)) SpecFunc {
		if newRef != "web:v2" || dryRun {
			t.Errorf("SpecFor(%s, dryRun=%v)", newRef, dryRun)
		}
		return func(_ context.Context, old container.InspectResponse, oldImg, newImg image.InspectResponse, ref string) (*dockerctl.CloneSpec, string, error) {
			spec, err := dockerctl.CloneConfig(old, oldImg, newImg, ref)
			if err == nil {
				spec.Config.Env = append(spec.Config.Env, "FROM_FILE=yes")
			}
			return spec, "following the file", err
		}
	}
	if _, err := h.deploy(t.Context(), "web:v2", nil); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	c, _ := h.eng.ContainerInspect(t.Context(), "web")
	if !slices.Contains(c.Config.Env, "FROM_FILE=yes") {
		t.Fatalf("new container env %v lacks what SpecFor set", c.Config.Env)
	}
	if !slices.ContainsFunc(h.events, func(e Event) bool { return e.Message == "following the file" }) {
		t.Fatalf("SpecFor's note not reported")
	}
}

// TestDryRunAgreesWithDeploy: the dry run and the deploy decide the same
// way. Regression: with --pull missing and a changed --http-probe on an
// unchanged image, --dry-run said "nothing" while the deploy redeployed to
// record the new settings.
func TestDryRunAgreesWithDeploy(t *testing.T) {
	for _, tc := range []struct {
		name         string
		image        string
		pull         PullPolicy
		force        bool
		flags        map[string]string
		wantUpToDate bool
	}{
		{name: "same image, same settings", image: "web:v1", pull: PullMissing, wantUpToDate: true},
		{name: "same image, pull never", image: "web:v1", pull: PullNever, wantUpToDate: true},
		{name: "same image, new http probe", image: "web:v1", pull: PullMissing, flags: map[string]string{"http-probe": "/healthz", "health-timeout": "1s"}},
		{name: "same image, new drain", image: "web:v1", pull: PullMissing, flags: map[string]string{"drain": "5s"}},
		{name: "same image, forced", image: "web:v1", pull: PullMissing, force: true},
		{name: "new image", image: "web:v2", pull: PullMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "none", "")
			req := Request{Target: "web", Image: tc.image, Pull: tc.pull, Force: tc.force, Flags: tc.flags}
			dry := req
			dry.DryRun = true
			res, err := h.d.Deploy(t.Context(), dry)
			if err != nil || res.Plan == nil {
				t.Fatalf("dry run: %v", err)
			}
			if res.Plan.UpToDate != tc.wantUpToDate {
				t.Fatalf("dry run up to date = %v, want %v (steps %q)", res.Plan.UpToDate, tc.wantUpToDate, res.Plan.Steps)
			}
			if n := h.eng.count(); n != 1 {
				t.Fatalf("dry run created something: %v", h.eng.calls())
			}
			res, _ = h.d.Deploy(t.Context(), req)
			created := slices.ContainsFunc(h.eng.calls(), func(c string) bool { return strings.HasPrefix(c, "create web-baton-") })
			if upToDate := res.Outcome == OutcomeUpToDate; upToDate != tc.wantUpToDate || created == tc.wantUpToDate {
				t.Fatalf("deploy: outcome %s, created a container: %v; want up to date = %v", res.Outcome, created, tc.wantUpToDate)
			}
		})
	}
}

// A Swarm task's container is refused (exit 2, naming the service; nothing
// created or stopped); the same container without the task labels deploys.
func TestDeploySwarmTaskRefused(t *testing.T) {
	h := newHarness(t, "none", "")
	h.eng.mu.Lock()
	labels := h.eng.containers[h.oldID].c.Config.Labels
	labels[LabelSwarmTaskID] = "xyz"
	labels[LabelSwarmServiceName] = "shop_web"
	h.eng.mu.Unlock()
	_, err := h.deploy(t.Context(), "web:v2", nil)
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "task of Swarm service shop_web") {
		t.Fatalf("task container: %v (exit %d)", err, ExitCode(err))
	}
	if _, err := h.d.Rollback(t.Context(), Request{Target: "web"}); ExitCode(err) != 2 || !strings.Contains(err.Error(), "shop_web") {
		t.Fatalf("rollback of a task container: %v (exit %d)", err, ExitCode(err))
	}
	h.assertOldServing()
	h.eng.mu.Lock()
	delete(labels, LabelSwarmTaskID)
	h.eng.mu.Unlock()
	if res, err := h.deploy(t.Context(), "web:v2", nil); err != nil || res.Outcome != OutcomeDeployed {
		t.Fatalf("plain container: %v %v", res, err)
	}
}
