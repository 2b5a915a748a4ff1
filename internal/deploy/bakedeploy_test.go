package deploy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
)

var bakeRelayFlags = map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"}

func bakeWithFlags(extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range bakeRelayFlags {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// emitDuring sends action for the new container, again and again (the fake
// engine replays nothing to a late subscriber), while the deploy record
// is at phase.
func (h *harness) emitDuring(ctx context.Context, phase Phase, action events.Action) {
	go func() {
		for ctx.Err() == nil {
			var rec Record
			found, _ := h.d.State.ReadRecord("web", &rec)
			if found && rec.Phase == phase {
				h.eng.mu.Lock()
				h.eng.emit(rec.NewID, action)
				h.eng.mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
}

// TestBakeRevertsWhenTheNewContainerDies: the new container dies in the
// bake window; traffic goes back to the old one, the new one is removed,
// the outcome is reverted with exit 1 and the old container never stopped.
func TestBakeRevertsWhenTheNewContainerDies(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.emitDuring(t.Context(), PhaseBake, events.ActionDie)
	res, err := h.deploy(t.Context(), "web:v2", bakeWithFlags(map[string]string{"bake": "1m"}))
	if ExitCode(err) != 1 || res.Outcome != OutcomeReverted || !res.OldServing {
		t.Fatalf("deploy: outcome %s exit %d err %v, want reverted, exit 1", res.Outcome, ExitCode(err), err)
	}
	if !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "into the bake") {
		t.Fatalf("error does not say why: %v", err)
	}
	h.assertOldServing()
	if slices.Contains(h.eng.calls(), "stop web") {
		t.Fatalf("the old container was stopped during the bake: %v", h.eng.calls())
	}
	tl := h.traffic.log
	if i := slices.IndexFunc(tl, func(s string) bool {
		return strings.HasPrefix(s, "switch web-baton-") && strings.HasSuffix(s, "-> web")
	}); i < 0 {
		t.Fatalf("traffic log %v: no switch back to web", tl)
	} else if !slices.Contains(tl[i:], "finish web") {
		// The kernel path's route comes back with Finish: without it the
		// reverted service stays on the relay's path until a status.
		t.Fatalf("traffic log %v: no finish for web after the switch back", tl)
	}
}

// TestBakePassesThenStopsOld: a bake with nothing wrong ends the window,
// then the old container is stopped and the deploy completes.
func TestBakePassesThenStopsOld(t *testing.T) {
	h := newHarness(t, "relay", "")
	res, err := h.deploy(t.Context(), "web:v2", bakeWithFlags(map[string]string{"bake": "200ms"}))
	if err != nil || res.Outcome != OutcomeDeployed {
		t.Fatalf("deploy: %v (%s)", err, res.Outcome)
	}
	if img := h.eng.imageOf("web"); img != "web:v2" {
		t.Fatalf("web runs %q, want web:v2", img)
	}
	var phases []Phase
	for _, p := range res.Phases {
		phases = append(phases, p.Phase)
	}
	if b, s := slices.Index(phases, PhaseBake), slices.Index(phases, PhaseStopOld); b < 0 || s < b {
		t.Fatalf("phases %v: want bake before stop-old", phases)
	}
}

// TestCanaryWaitsThenAbortOrPromote: a canary without a duration returns
// with the split on; another deploy is refused; abort sends everything
// back; a second canary is promoted and the deploy completes.
func TestCanaryWaitsThenAbortOrPromote(t *testing.T) {
	h := newHarness(t, "relay", "")
	res, err := h.deploy(t.Context(), "web:v2", bakeWithFlags(map[string]string{"canary": "20"}))
	if err != nil || res.Outcome != OutcomeCanary {
		t.Fatalf("deploy --canary 20: %v (%s)", err, res.Outcome)
	}
	if !slices.ContainsFunc(h.traffic.log, func(s string) bool { return strings.HasPrefix(s, "split web 20% -> web-baton-") }) {
		t.Fatalf("traffic log %v: no split", h.traffic.log)
	}
	if h.eng.state(h.oldID) != "running" || h.eng.count() != 2 {
		t.Fatalf("during the canary: old %s, %d containers", h.eng.state(h.oldID), h.eng.count())
	}
	if _, err := h.deploy(t.Context(), "web:v2", nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "baton promote web or baton abort web") {
		t.Fatalf("deploy during a canary: %v, want a refusal naming promote and abort", err)
	}
	if res, err := h.d.Abort(t.Context(), "web"); err != nil || res.Outcome != OutcomeReverted {
		t.Fatalf("abort: %v", err)
	}
	h.assertOldServing()
	if _, err := h.d.Promote(t.Context(), "web"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("promote without a canary: %v, want ErrInvalid", err)
	}

	if res, err := h.deploy(t.Context(), "web:v2", bakeWithFlags(map[string]string{"canary": "20", "bake": "100ms"})); err != nil || res.Outcome != OutcomeCanary {
		t.Fatalf("second canary: %v", err)
	}
	res, err = h.d.Promote(t.Context(), "web")
	if err != nil || res.Outcome != OutcomeDeployed {
		t.Fatalf("promote: %v (%+v)", err, res)
	}
	if img := h.eng.imageOf("web"); img != "web:v2" || h.eng.count() != 1 {
		t.Fatalf("after promote web runs %q with %d containers", img, h.eng.count())
	}
	var rec Record
	if found, _ := h.d.State.ReadRecord("web", &rec); found {
		t.Fatalf("record left after promote: %+v", rec)
	}
}

// TestTimedCanaryRevertsOnUnhealthy: a canary with a duration turning
// unhealthy reverts like a bake.
func TestTimedCanaryRevertsOnUnhealthy(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.emitDuring(t.Context(), PhaseCanary, events.Action("health_status: unhealthy"))
	res, err := h.deploy(t.Context(), "web:v2", bakeWithFlags(map[string]string{"canary": "20:1m"}))
	if ExitCode(err) != 1 || res.Outcome != OutcomeReverted || !strings.Contains(err.Error(), "turned unhealthy") {
		t.Fatalf("deploy: outcome %s exit %d err %v", res.Outcome, ExitCode(err), err)
	}
	h.assertOldServing()
}
