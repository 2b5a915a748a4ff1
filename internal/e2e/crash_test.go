package e2e

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// TestKilledBatonConverges SIGKILLs baton at each phase of a deploy behind
// the relay, under load, then runs `baton status`, which converges the
// leftovers. Through it all nginx keeps answering (zero failed requests), and
// afterwards exactly one container serves under the service's name, on the
// version the rule predicts: before the old container's stop began, back to
// the old image; after, forward to the new one.
func TestKilledBatonConverges(t *testing.T) {
	e := newEnv(t)
	// STOP_DELAY keeps the old container serving for a while after SIGTERM,
	// as real apps do, so a kill can land in the middle of the stop.
	env := map[string]string{"STOP_DELAY": "2s"}
	v1 := e.version("v1", "v1", env)
	v2 := e.version("v2", "v2", env)
	hostPort := testenv.FreePort(t)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	published := "http://127.0.0.1:" + itoa(hostPort) + "/"
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{"127.0.0.1:" + itoa(hostPort)}})
	e.mustDeploy("--force", "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", name)
	load := startLoad(t, ng.URL()+"/", 5*time.Minute)

	current, currentV := v1, "v1"
	steps := []struct {
		phase   string // kill when baton reports this phase
		forward bool   // whether converging completes the deploy
	}{
		{"create", false},
		{"warm", false},
		{"healthy", false},
		{"switch", false},
		{"drain", false},
		{"stop-old", true},
		{"handover", true},
		{"finalize", true},
	}
	for _, st := range steps {
		next, nextV := v2, "v2"
		if current == v2 {
			next, nextV = v1, "v1"
		}
		killed, _ := e.runUntil(func(phase, msg string) bool { return phase == st.phase },
			"deploy", "--json", "--image", next, name)
		if !killed {
			t.Fatalf("baton finished before reaching phase %s", st.phase)
		}
		// The kill lands a moment after the event: a short phase (a drain
		// with nothing in flight takes ms) may be over by then. Recovery
		// follows the phase the record reached, so the expected outcome
		// does too; the table's outcome holds when the record is at the
		// phase the kill aimed at.
		forward := st.forward
		if phase := e.recordPhase(); phase != "" && phase != st.phase {
			t.Logf("killed at %s, the record had reached %s", st.phase, phase)
			forward = phase == "stop-old" || phase == "handover" || phase == "finalize"
		}
		r := e.run("status", name)
		if r.code != 0 {
			t.Fatalf("status after a kill at %s: exit %d: %s", st.phase, r.code, r.stderr)
		}
		want, wantV := current, currentV
		if forward {
			want, wantV = next, nextV
		}
		// Converging may finish with a forward completion whose handover
		// needs the old container fully stopped first.
		e.assertSingle(name, want)
		assertServes(t, ng.URL()+"/", wantV)
		assertServes(t, published, wantV)
		if forward && !strings.Contains(r.stderr, "finished interrupted deploy") {
			t.Fatalf("status did not report finishing the deploy: %s", r.stderr)
		}
		if !forward && !strings.Contains(r.stderr, "rolled back interrupted deploy") && st.phase != "create" {
			t.Fatalf("status did not report rolling back: %s", r.stderr)
		}
		current, currentV = want, wantV
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
}

// TestHostRelayKilledComesBack SIGKILLs the relay that serves an nginx on
// the host (in the host's network namespace, on 127.0.0.1): Docker restarts
// it, and with no call from baton it listens on the same address and
// relays to the target its state file kept; then a deploy under load
// switches it with zero failed requests.
func TestHostRelayKilledComesBack(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, name, e.net) + ":8080"}})
	e.mustDeploy("--image", v2, "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", name)
	assertServes(t, ng.URL()+"/", "v2")

	rc := e.inspect(traffic.RelayName(name))
	listen := rc.Config.Labels[traffic.LabelRelayListen]
	if !rc.HostConfig.NetworkMode.IsHost() || listen == "" {
		t.Fatalf("relay %s: network mode %q, listen %q; want the host's namespace", rc.Name, rc.HostConfig.NetworkMode, listen)
	}
	if err := syscall.Kill(rc.State.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing relay process %d: %v", rc.State.Pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := e.inspect(traffic.RelayName(name))
		if c.RestartCount > 0 && c.State.Running && c.State.Pid != rc.State.Pid {
			if conn, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
				_ = conn.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay did not come back listening on %s within 30s: %+v", listen, c.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Served through the restarted relay with the target from its state
	// file: nothing re-pointed it.
	assertServes(t, ng.URL()+"/", "v2")

	load := startLoad(t, ng.URL()+"/", 2*time.Minute)
	time.Sleep(time.Second)
	e.mustDeploy("--image", v1, name)
	time.Sleep(time.Second)
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: the deploy did not move traffic", res.Versions())
	}
	if c := e.inspect(traffic.RelayName(name)); c.ID != rc.ID {
		t.Fatalf("the relay was recreated (%s, was %s): the deploy should have used the restarted one", c.ID, rc.ID)
	}
	e.assertSingle(name, v1)
	assertServes(t, ng.URL()+"/", "v1")
}
