package deploy

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/baton-sh/baton/dockerctl"
)

func TestDecideRecovery(t *testing.T) {
	cases := []struct {
		name string
		o    observed
		want recoveryAction
	}{
		{"new never created", observed{OldExists: true, OldRunning: true}, recoverBack},
		{"warming when killed", observed{OldExists: true, OldRunning: true, NewExists: true, NewRunning: true}, recoverBack},
		{"new healthy, traffic not yet stopped old", observed{OldExists: true, OldRunning: true, NewExists: true, NewRunning: true, NewHealthy: true}, recoverBack},
		{"killed during the old one's stop", observed{PastNoReturn: true, OldExists: true, OldRunning: true, NewExists: true, NewRunning: true, NewHealthy: true}, recoverForward},
		{"old stopped, new serving", observed{PastNoReturn: true, OldExists: true, NewExists: true, NewRunning: true, NewHealthy: true}, recoverForward},
		{"old removed, new not renamed", observed{PastNoReturn: true, NewExists: true, NewRunning: true, NewHealthy: true}, recoverForward},
		{"old died by itself before the stop, new ready", observed{OldExists: true, NewExists: true, NewRunning: true, NewHealthy: true}, recoverForward},
		{"old died, new unhealthy", observed{OldExists: true, NewExists: true, NewRunning: true}, recoverRestartOld},
		{"past no return, new died", observed{PastNoReturn: true, OldExists: true, NewExists: true}, recoverRestartOld},
		{"nothing left", observed{PastNoReturn: true}, recoverStuck},
		{"only a dead new one", observed{PastNoReturn: true, NewExists: true}, recoverStuck},
	}
	for _, tc := range cases {
		if got := decideRecovery(tc.o); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestKilledDeployConverges kills baton (runtime.Goexit in the middle of an
// engine call) at every step of a deploy, then runs the next deploy's
// convergence, and checks the service ends with exactly one container named
// web, running, receiving the traffic, and no record left.
func TestKilledDeployConverges(t *testing.T) {
	steps := []struct {
		killOn    string
		wantImage string // what web runs after converging
		hostPort  bool   // a step only a container with a fixed host port takes
	}{
		{killOn: "create web-baton-", wantImage: "web:v1"},
		{killOn: "connect web-baton-", wantImage: "web:v1"},
		{killOn: "mirror shop", wantImage: "web:v1", hostPort: true},
		{killOn: "start web-baton-", wantImage: "web:v1"},
		{killOn: "switch", wantImage: "web:v1"},
		{killOn: "stop web", wantImage: "web:v2"},
		{killOn: "connect web-baton-* shop", wantImage: "web:v2", hostPort: true}, // the handover
		{killOn: "remove web", wantImage: "web:v2"},
		{killOn: "rename web-baton-", wantImage: "web:v2"},
	}
	for _, hostPort := range []string{"", "8080"} {
		for _, st := range steps {
			if st.hostPort && hostPort == "" {
				continue
			}
			t.Run(st.killOn+"/port="+hostPort, func(t *testing.T) {
				h := newHarness(t, "relay", hostPort)
				flags := map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"}
				if st.killOn == "switch" {
					h.traffic.killOnSwitch = true
				} else {
					h.eng.killOn = st.killOn
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = h.deploy(context.WithoutCancel(t.Context()), "web:v2", flags)
				}()
				<-done
				if h.eng.killOn != "" || h.traffic.killOnSwitch {
					t.Fatalf("step %s never reached: %v", st.killOn, h.eng.calls())
				}
				// The next run converges first.
				list, err := h.d.Status(t.Context(), "", func(Phase, string, string, ...any) {})
				if err != nil {
					t.Fatalf("status: %v", err)
				}
				if len(list) > 0 && list[0].Problem != "" {
					t.Fatalf("status problem: %s", list[0].Problem)
				}
				if got := h.eng.state("web"); got != "running" {
					t.Fatalf("web is %s after converging (calls %v)", got, h.eng.calls())
				}
				if got := h.eng.imageOf("web"); got != st.wantImage {
					t.Fatalf("web runs %s, want %s", got, st.wantImage)
				}
				nets := slices.DeleteFunc(h.eng.networksOf("web"), dockerctl.IsMirrorNetwork)
				if !slices.Equal(nets, []string{"baton-svc-web", "shop"}) {
					t.Fatalf("web is on networks %v, want baton-svc-web and shop", nets)
				}
				if n := h.eng.count(); n != 1 {
					t.Fatalf("%d containers left, want 1: %v", n, h.eng.calls())
				}
				webC, _ := h.eng.ContainerInspect(t.Context(), "web")
				if cur := h.traffic.target(); cur != webC.ID {
					t.Fatalf("traffic goes to %s, want web %s", cur, webC.ID)
				}
				var rec Record
				if found, _ := h.d.State.ReadRecord("web", &rec); found {
					t.Fatalf("record left: %+v", rec)
				}
				if len(h.eng.brokenConns) > 0 {
					t.Fatalf("a connect hit a held port: %v", h.eng.brokenConns)
				}
			})
		}
	}
}

// A baton killed right after sending the create leaves the engine to finish
// it a moment later: the next status must still find that container by the
// name its record gives and remove it, not orphan it.
func TestKilledDuringCreateTheEngineFinishes(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.eng.lateCreate = 600 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = h.deploy(context.WithoutCancel(t.Context()), "web:v2", map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"})
	}()
	<-done
	if n := h.eng.count(); n != 1 {
		t.Fatalf("the create landed before status ran (%d containers): the test proves nothing", n)
	}
	landed := time.Now().Add(700 * time.Millisecond) // the late create is in by then
	if _, err := h.d.Status(t.Context(), "", func(Phase, string, string, ...any) {}); err != nil {
		t.Fatalf("status: %v", err)
	}
	time.Sleep(time.Until(landed))
	if n := h.eng.count(); n != 1 {
		t.Fatalf("%d containers after converging, want 1 (the late one orphaned): %v", n, h.eng.calls())
	}
	if got := h.eng.imageOf("web"); got != "web:v1" {
		t.Fatalf("web runs %s, want web:v1", got)
	}
}

// A deploy killed after removing the old container and before renaming the
// new one leaves no container under the service's name; the next deploy,
// naming the service, still finds and converges it.
func TestNextDeployFindsServiceWithoutItsName(t *testing.T) {
	h := newHarness(t, "relay", "8080")
	h.eng.killOn = "remove web"
	flags := map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = h.deploy(context.WithoutCancel(t.Context()), "web:v2", flags)
	}()
	<-done
	if h.eng.state("web") != "missing" {
		t.Fatalf("setup: web should be gone, is %s", h.eng.state("web"))
	}
	res, err := h.deploy(t.Context(), "web:v2", nil)
	if err != nil {
		t.Fatalf("next deploy: %v", err)
	}
	if res.Recovered == "" || res.Outcome != OutcomeUpToDate {
		t.Fatalf("next deploy: recovered %q, outcome %s; want it to converge, then find v2 up to date", res.Recovered, res.Outcome)
	}
	if h.eng.state("web") != "running" || h.eng.imageOf("web") != "web:v2" || h.eng.count() != 1 {
		t.Fatalf("after converging: web %s %s, %d containers", h.eng.state("web"), h.eng.imageOf("web"), h.eng.count())
	}
}

// A baton killed in the middle of removing the old container leaves the
// engine finishing that removal; the next status, converging, is refused
// ("removal ... already in progress") until it ends. It must wait for it
// and finish the deploy, not report a problem with no container under the
// service's name (as CI once saw on Docker 29).
func TestKilledDuringSlowRemoveConverges(t *testing.T) {
	for _, slow := range []time.Duration{0, 800 * time.Millisecond} {
		t.Run(slow.String(), func(t *testing.T) {
			h := newHarness(t, "relay", "")
			h.eng.killOn = "remove web"
			h.eng.slowRemove = slow
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = h.deploy(context.WithoutCancel(t.Context()), "web:v2", map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"})
			}()
			<-done
			if h.eng.killOn != "" {
				t.Fatalf("the remove was never reached: %v", h.eng.calls())
			}
			if slow > 0 && h.eng.state("web") != "removing" {
				t.Fatalf("setup: web is %s, want it still being removed when status runs", h.eng.state("web"))
			}
			list, err := h.d.Status(t.Context(), "", func(Phase, string, string, ...any) {})
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if len(list) != 1 || list[0].Problem != "" {
				t.Fatalf("status: %+v", list)
			}
			if h.eng.state("web") != "running" || h.eng.imageOf("web") != "web:v2" || h.eng.count() != 1 {
				t.Fatalf("after converging: web %s %s, %d containers: %v", h.eng.state("web"), h.eng.imageOf("web"), h.eng.count(), h.eng.calls())
			}
			var rec Record
			if found, _ := h.d.State.ReadRecord("web", &rec); found {
				t.Fatalf("record left: %+v", rec)
			}
		})
	}
}

// The wait is only for a removal under way: any other refusal to remove
// (here, a running container removed without force) is still an error.
func TestRemoveContainerOtherConflictFails(t *testing.T) {
	eng := newFakeEngine()
	eng.addImage("web:v1", "1", "healthy")
	id := eng.runOld("web", "web:v1", "", "shop")
	if err := removeContainer(t.Context(), eng, id, container.RemoveOptions{}); err == nil {
		t.Fatalf("removing a running container without force succeeded")
	}
	if eng.state("web") != "running" {
		t.Fatalf("web is %s, want it untouched", eng.state("web"))
	}
	// Positive control: with force the same call removes it.
	if err := removeContainer(t.Context(), eng, id, container.RemoveOptions{Force: true}); err != nil {
		t.Fatalf("forced remove: %v", err)
	}
	if eng.state("web") != "missing" {
		t.Fatalf("web is %s after a forced remove", eng.state("web"))
	}
}

// A removal under way that fails in the engine leaves the container dead,
// with no destroy event: the wait removes it again rather than waiting out
// its bound.
func TestRemoveContainerAfterFailedRemoval(t *testing.T) {
	eng := newFakeEngine()
	eng.addImage("web:v1", "1", "healthy")
	id := eng.runOld("web", "web:v1", "", "shop")
	if err := eng.ContainerStop(t.Context(), id, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	eng.mu.Lock()
	fc := eng.containers[id]
	fc.removing, fc.c.State.Status = true, "removing"
	eng.mu.Unlock()
	go func() {
		time.Sleep(300 * time.Millisecond)
		eng.mu.Lock()
		fc.removing, fc.c.State.Status = false, "dead"
		eng.mu.Unlock()
	}()
	t0 := time.Now()
	if err := removeContainer(t.Context(), eng, id, container.RemoveOptions{}); err != nil {
		t.Fatalf("remove after a failed removal: %v", err)
	}
	if eng.state("web") != "missing" {
		t.Fatalf("web is %s, want it removed", eng.state("web"))
	}
	if took := time.Since(t0); took > 10*time.Second {
		t.Fatalf("took %s: waited out the bound instead of removing again", took)
	}
}
