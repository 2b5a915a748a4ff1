package deploy

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// addHostileImage adds an image whose author labelled it as baton's app of
// service svc, with settings and a reload command.
func (h *harness) addHostileImage(ref, svc string) {
	h.eng.addImage(ref, "evil", "healthy")
	h.eng.mu.Lock()
	defer h.eng.mu.Unlock()
	img := h.eng.images[ref]
	for k, v := range hostileLabels {
		img.Config.Labels[k] = v
	}
	img.Config.Labels["baton.service"] = svc
}

// runHostile runs a container of ref the way someone on the host would, with
// a name of their own, stopped or running.
func (h *harness) runHostile(name, ref string, running bool) string {
	resp, err := h.eng.ContainerCreate(context.Background(), &container.Config{Image: ref}, &container.HostConfig{NetworkMode: "shop"},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"shop": {}}}, nil, name)
	if err != nil {
		h.t.Fatal(err)
	}
	if running {
		if err := h.eng.ContainerStart(context.Background(), resp.ID, container.StartOptions{}); err != nil {
			h.t.Fatal(err)
		}
	}
	h.eng.mu.Lock()
	h.eng.log = nil // the calls baton makes are what the tests check
	h.eng.mu.Unlock()
	return resp.ID
}

// A container whose image claims to be baton's app of a service is never
// renamed, removed, started or attached by status or a deploy, whether the
// service it names is another one ("zz"), or the managed service itself
// while that one is stopped; the managed service still deploys.
func TestHostileLabelsNeverMakeBatonAct(t *testing.T) {
	for _, tc := range []struct{ name, svc string }{{"foreign service", "zz"}, {"the managed service's name", "web"}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "relay", "")
			h.addHostileImage("evil:1", tc.svc)
			evilID := h.runHostile("evil", "evil:1", false)
			flags := map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"}
			if _, err := h.deploy(t.Context(), "web:v2", flags); err != nil {
				t.Fatalf("the managed service's deploy (positive control): %v", err)
			}
			if err := h.eng.ContainerStop(t.Context(), "web", container.StopOptions{}); err != nil {
				t.Fatal(err)
			}
			var notes []string
			list, err := h.d.Status(t.Context(), "", func(_ Phase, _ string, f string, a ...any) { notes = append(notes, f) })
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range list {
				if st.Service == tc.svc && tc.svc != "web" {
					t.Fatalf("status lists the hostile image's service %q: %+v", tc.svc, st)
				}
			}
			for _, call := range h.eng.calls() {
				if strings.Contains(call, "evil") || strings.Contains(call, evilID[:12]) {
					t.Fatalf("baton touched the hostile container: %s (all calls %v)", call, h.eng.calls())
				}
			}
			if h.eng.state("evil") != "created" || h.eng.state("web") != "exited" {
				t.Fatalf("evil is %s, web is %s; want evil untouched and web left stopped", h.eng.state("evil"), h.eng.state("web"))
			}
			if nets := h.eng.networksOf("evil"); len(nets) != 1 || nets[0] != "shop" {
				t.Fatalf("evil is on %v, want only shop", nets)
			}
		})
	}
}

// The hostile image deployed onto a managed service: its labels are
// ignored, the deploy succeeds, and the next deploy uses the settings the
// operator gave, not the image's.
func TestHostileImageDeployedKeepsOperatorSettings(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.addHostileImage("evil:1", "zz")
	flags := map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true", "drain": "5s"}
	if _, err := h.deploy(t.Context(), "web:v2", flags); err != nil {
		t.Fatal(err)
	}
	res, err := h.deploy(t.Context(), "evil:1", nil)
	if err != nil {
		t.Fatalf("deploying the hostile image: %v", err)
	}
	if res.Outcome != OutcomeDeployed {
		t.Fatalf("outcome %s", res.Outcome)
	}
	h.traffic.mu.Lock()
	settings := h.traffic.lastSettings
	h.traffic.mu.Unlock()
	if settings.NginxReload != "true" || settings.NginxUpstream != "/etc/nginx/baton/x.conf" || !settings.Relay || settings.Drain.String() != "5s" {
		t.Fatalf("traffic got settings %+v, want the operator's", settings)
	}
	// And the deploy after it, from the labels the hostile image left.
	plan, err := h.d.Deploy(t.Context(), Request{Target: "web", Image: "web:v2", DryRun: true, Pull: PullMissing})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Plan == nil || len(plan.Plan.IgnoredLabels) == 0 || !strings.Contains(plan.Plan.Settings, "drain=5s") || strings.Contains(plan.Plan.Settings, "relay=false") {
		t.Fatalf("dry run after the hostile image: %+v", plan.Plan)
	}
}

// A container an earlier version deployed carries its reload command as a
// label: a deploy without the flag is refused, naming the flag; with the
// flag it deploys (the label outvoted, and not copied onto the new
// container), and later deploys use the recorded command.
func TestOldReloadLabelNeedsTheFlagOnce(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.eng.mu.Lock()
	for _, c := range h.eng.containers {
		if c.c.Name == "/web" {
			c.c.Config.Labels["baton.nginx-reload"] = "old-reload"
			c.c.Config.Labels["baton.nginx-upstream"] = "/etc/nginx/baton/x.conf"
		}
	}
	h.eng.mu.Unlock()
	_, err := h.deploy(t.Context(), "web:v2", nil)
	if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), "pass --nginx-reload CMD") {
		t.Fatalf("deploy without the flag: %v, want exit 2 naming --nginx-reload", err)
	}
	if h.eng.imageOf("web") != "web:v1" {
		t.Fatal("a refused deploy changed web")
	}
	if _, err := h.deploy(t.Context(), "web:v2", map[string]string{"nginx-reload": "new-reload"}); err != nil {
		t.Fatalf("deploy with the flag (positive control): %v", err)
	}
	newC, _ := h.eng.ContainerInspect(t.Context(), "web")
	if _, ok := newC.Config.Labels["baton.nginx-reload"]; ok {
		t.Fatalf("the reload command was copied onto the new container: %v", newC.Config.Labels)
	}
	if _, err := h.deploy(t.Context(), "web:v1", nil); err != nil {
		t.Fatalf("a later deploy without flags: %v", err)
	}
	h.traffic.mu.Lock()
	defer h.traffic.mu.Unlock()
	if h.traffic.lastSettings.NginxReload != "new-reload" {
		t.Fatalf("later deploy used reload %q, want the recorded new-reload", h.traffic.lastSettings.NginxReload)
	}
}

// `baton status NAME` adopts a container an earlier version deployed (no
// record in the state directory yet) only when its own baton labels say so:
// one whose image claims to be baton's app is never recorded, touched or
// attached, while the same labels put on the container by whoever ran it
// (root or the docker group) adopt it, so its traffic is repaired.
func TestNamedStatusAdoptsOnlyOperatorLabels(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.addHostileImage("evil:1", "evil")
	evilID := h.runHostile("evil", "evil:1", true)
	if _, err := h.d.Status(t.Context(), "evil", func(Phase, string, string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	if _, recorded, err := h.d.readService("evil"); err != nil || recorded {
		t.Fatalf("the hostile container was recorded as baton's (recorded %v, err %v)", recorded, err)
	}
	for _, call := range h.eng.calls() {
		if strings.Contains(call, "evil") || strings.Contains(call, evilID[:12]) {
			t.Fatalf("baton touched the hostile container: %s", call)
		}
	}

	// Positive control: the same labels from whoever created the container.
	labels := map[string]string{LabelManaged: "true", LabelRole: RoleApp, LabelService: "legacy"}
	resp, err := h.eng.ContainerCreate(t.Context(), &container.Config{Image: "web:v1", Labels: labels}, &container.HostConfig{NetworkMode: "shop"},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"shop": {}}}, nil, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.eng.ContainerStart(t.Context(), resp.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.d.Status(t.Context(), "legacy", func(Phase, string, string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	rec, recorded, err := h.d.readService("legacy")
	if err != nil || !recorded || rec.ContainerID != resp.ID {
		t.Fatalf("a container labelled by its creator was not adopted: recorded %v, %+v, err %v", recorded, rec, err)
	}
	// A status of every service adopts nothing.
	h2 := newHarness(t, "relay", "")
	resp2, err := h2.eng.ContainerCreate(t.Context(), &container.Config{Image: "web:v1", Labels: labels}, &container.HostConfig{NetworkMode: "shop"},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"shop": {}}}, nil, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.eng.ContainerStart(t.Context(), resp2.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.d.Status(t.Context(), "", func(Phase, string, string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	if _, recorded, _ := h2.d.readService("legacy"); recorded {
		t.Fatal("a status of every service adopted a container")
	}
}
