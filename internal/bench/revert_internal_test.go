package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
)

// TestCountRevertLoad: each request counts for the run whose deploy it was
// sent during or after, and only a 502 without a version sent while that
// deploy ran is the broken release's, up to the resets the relay counted
// of it; everything else that failed is lost.
func TestCountRevertLoad(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	spans := []revertSpan{{at(10), at(20)}, {at(30), at(40)}}
	ok := func(s int) loadgen.Sample { return loadgen.Sample{Start: at(s), Status: 200, Version: "A"} }
	reset := func(s int) loadgen.Sample { return loadgen.Sample{Start: at(s), Status: 502, Err: "status 502"} }
	samples := []loadgen.Sample{
		ok(5),     // before the first run: counted nowhere
		ok(11),    // run 1
		reset(12), // run 1, the broken release's
		reset(25), // run 1, but after its deploy: lost
		{Start: at(15), Status: 500, Version: "A", Err: "status 500"}, // run 1: an answer of the old version, lost
		ok(31),    // run 2
		reset(33), // run 2, the broken release's
		reset(34), // run 2: one more than the relay counted resets, so lost
		ok(50),    // run 2, until the load's end
	}
	runs := []RevertRun{{Resets: 5}, {Resets: 1}}
	countRevertLoad(runs, spans, samples)
	want := []RevertRun{{Total: 4, Failed: 3, ByApp: 1, Resets: 5}, {Total: 4, Failed: 2, ByApp: 1, Resets: 1}}
	for i := range runs {
		if runs[i] != want[i] {
			t.Errorf("run %d: %+v, want %+v", i+1, runs[i], want[i])
		}
	}
}

// TestRevertEvents: the revert time runs from baton's rolling-back event to
// its traffic-back event; a run missing either is not measured.
func TestRevertEvents(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ev := func(ms int, phase, msg string) Event {
		return Event{Time: t0.Add(time.Duration(ms) * time.Millisecond), Phase: phase, Message: msg}
	}
	run := &DeployRun{Events: []Event{
		ev(0, "switch", "moving traffic to web-baton-1 (relay)"),
		ev(100, "bake", "baking web-baton-1 for 30s"),
		ev(2100, "bake", "deploy failed, rolling back: bake: new container web-baton-1 reset 9 connections"),
		ev(2106, "bake", "traffic is back on web (the relay call took 5ms)"),
		ev(2300, "bake", "drained web-baton-1: 2 connections were open on it when traffic moved back, 0 cut; the relay counted 11 resets and 0 failed dials of it"),
	}}
	if n, ok := revertResets(run); !ok || n != 11 {
		t.Fatalf("revertResets = %d %v, want 11", n, ok)
	}
	seen, back, switched, ok := revertEvents(run)
	if !ok || back.Sub(seen) != 6*time.Millisecond || seen.Sub(switched) != 2100*time.Millisecond {
		t.Fatalf("revertEvents = %v %v %v %v; want revert 6ms, caught 2.1s", seen, back, switched, ok)
	}
	run.Events = run.Events[:3]
	if _, ok := revertResets(run); ok {
		t.Fatal("revertResets found counts in a run without them")
	}
	if _, _, _, ok := revertEvents(run); ok {
		t.Fatal("revertEvents found a revert without the traffic-back event")
	}
	rep := &RevertReport{Engine: "e", Runs: []RevertRun{{N: 1, Total: 10, Failed: 3, ByApp: 2, Resets: 2, Revert: 6 * time.Millisecond}}}
	if s := rep.String(); !strings.Contains(s, "run 1: failed 3/10 (2 reset by the broken release, which the relay counted 2 resets of; 1 lost)") || !strings.Contains(s, "1 requests lost outside") {
		t.Fatalf("report:\n%s", s)
	}
}
