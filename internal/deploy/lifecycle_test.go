package deploy

import (
	"errors"
	"strings"
	"testing"

	"github.com/baton-sh/baton/dockerctl"
)

var relayFlags = map[string]string{"nginx-upstream": "/etc/nginx/baton/x.conf", "nginx-reload": "true"}

func withFlags(extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range relayFlags {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// A pre-switch command runs once, in the new container, after it is
// healthy and before traffic moves to it.
func TestPreSwitchRunsInNewContainerBeforeSwitch(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.eng.execResult = dockerctl.ExecResult{Stdout: "migrated\n"}
	res, err := h.deploy(t.Context(), "web:v2", withFlags(map[string]string{"pre-switch": "/app/migrate --up"}))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	calls := h.eng.calls()
	execs := 0
	for _, c := range calls {
		if strings.HasPrefix(c, "exec ") {
			execs++
			if !strings.HasPrefix(c, "exec web-baton-") || !strings.HasSuffix(c, " /app/migrate --up") {
				t.Fatalf("pre-switch ran as %q, want in the new container", c)
			}
		}
	}
	if execs != 1 {
		t.Fatalf("pre-switch ran %d times: %v", execs, calls)
	}
	if indexOf(t, calls, "exec ") < indexOf(t, calls, "start web-baton-") || indexOf(t, calls, "exec ") > indexOf(t, calls, "stop web") {
		t.Fatalf("pre-switch out of order: %v", calls)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "--pre-switch /app/migrate --up ran in web-baton-") {
		t.Fatalf("notes %v", res.Notes)
	}
}

// A failing pre-switch aborts with the old container serving, the new one
// removed, and the command's output (redacted) in the error.
func TestPreSwitchFailureKeepsOldServing(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.eng.execResult = dockerctl.ExecResult{ExitCode: 3, Stdout: "connecting to postgres://app:hunter2@db/shop\n", Stderr: "migration 0042 failed: column exists"}
	res, err := h.deploy(t.Context(), "web:v2", withFlags(map[string]string{"pre-switch": "/app/migrate --up"}))
	if err == nil {
		t.Fatal("deploy succeeded, want the pre-switch failure")
	}
	if ExitCode(err) != 1 || !res.OldServing {
		t.Fatalf("exit %d old serving %v, want 1 and true", ExitCode(err), res.OldServing)
	}
	msg := err.Error()
	for _, want := range []string{"exited 3", "migration 0042 failed: column exists", "keeps serving"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Fatalf("error leaks a password: %q", msg)
	}
	for _, l := range h.traffic.log {
		if strings.HasPrefix(l, "switch ") {
			t.Fatalf("traffic moved although the pre-switch failed: %v", h.traffic.log)
		}
	}
	h.assertOldServing()
}

func TestPreSwitchNeverFromLabel(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.eng.mu.Lock()
	h.eng.containers[h.oldID].c.Config.Labels["baton.pre-switch"] = "/bin/sh -c evil"
	h.eng.mu.Unlock()
	_, err := h.deploy(t.Context(), "web:v2", relayFlags)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--pre-switch") {
		t.Fatalf("err = %v, want a refusal of the label naming --pre-switch", err)
	}
	for _, c := range h.eng.calls() {
		if strings.HasPrefix(c, "exec ") || strings.HasPrefix(c, "create ") {
			t.Fatalf("a label made baton act: %v", h.eng.calls())
		}
	}
}

// --drain-signal reaches the old container after traffic moved and before
// it is stopped; the drain's counts are in the result.
func TestDrainSignalAndCounts(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.traffic.drainWaited, h.traffic.drainCut = 5, 2
	res, err := h.deploy(t.Context(), "web:v2", withFlags(map[string]string{"drain-signal": "usr1"}))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	calls := h.eng.calls()
	k := indexOf(t, calls, "kill web SIGUSR1")
	if k < indexOf(t, calls, "start web-baton-") || k > indexOf(t, calls, "stop web") {
		t.Fatalf("signal out of order: %v", calls)
	}
	if res.Drain == nil || res.Drain.Waited != 5 || res.Drain.Cut != 2 || res.Drain.Signal != "SIGUSR1" {
		t.Fatalf("drain report %+v", res.Drain)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "2 still open after --drain") {
		t.Fatalf("notes %v", res.Notes)
	}
	if _, err := h.deploy(t.Context(), "web:v1", withFlags(map[string]string{"drain-signal": "SIGKILL"})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("--drain-signal SIGKILL: err %v, want refused", err)
	}
}

// A MAC address the user chose cannot be held by two containers: the
// deploy is refused naming it, before anything is created, unless the
// operator accepts the drift.
func TestDriftRefusedUnlessAccepted(t *testing.T) {
	h := newHarness(t, "relay", "")
	h.eng.mu.Lock()
	h.eng.containers[h.oldID].c.Config.MacAddress = "02:42:ac:11:00:99" //nolint:staticcheck // SA1019: the API 1.41 form
	h.eng.mu.Unlock()

	for _, dry := range []bool{true, false} {
		_, err := h.d.Deploy(t.Context(), Request{Target: "web", Image: "web:v2", Pull: PullMissing, Flags: relayFlags, DryRun: dry})
		if !errors.Is(err, ErrUnsupported) || ExitCode(err) != 2 || !strings.Contains(err.Error(), "mac-address 02:42:ac:11:00:99") || !strings.Contains(err.Error(), "--accept-drift mac-address") {
			t.Fatalf("dry run %v: err = %v, want a refusal naming mac-address", dry, err)
		}
	}
	for _, c := range h.eng.calls() {
		if strings.HasPrefix(c, "create ") || strings.HasPrefix(c, "pull ") {
			t.Fatalf("refused deploy changed the host: %v", h.eng.calls())
		}
	}
	h.assertOldServing()

	accept := withFlags(map[string]string{"accept-drift": "mac-address"})
	dry, err := h.d.Deploy(t.Context(), Request{Target: "web", Image: "web:v2", Pull: PullMissing, Flags: accept, DryRun: true})
	if err != nil || dry.Plan == nil || len(dry.Plan.Drift) != 1 || dry.Plan.Drift[0].Field != dockerctl.DriftMACAddress {
		t.Fatalf("dry run with --accept-drift: err %v plan %+v", err, dry.Plan)
	}
	if _, err := h.deploy(t.Context(), "web:v2", accept); err != nil {
		t.Fatalf("deploy with --accept-drift: %v", err)
	}
	newC, _ := h.eng.ContainerInspect(t.Context(), "web")
	if h.eng.imageOf("web") != "web:v2" || newC.Config.MacAddress != "" { //nolint:staticcheck // SA1019
		t.Fatalf("web runs %s with MAC %q, want web:v2 and a generated MAC", h.eng.imageOf("web"), newC.Config.MacAddress) //nolint:staticcheck // SA1019
	}
	if _, err := h.deploy(t.Context(), "web:v1", withFlags(map[string]string{"accept-drift": "hostname"})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("--accept-drift hostname: err %v, want refused as unknown", err)
	}
}
