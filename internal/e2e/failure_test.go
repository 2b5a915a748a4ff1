package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/baton-sh/baton/internal/testenv"
)

// TestFailedDeploysLeaveOldServing: every way a deploy can fail before the
// old container stops gives a clear one-line error, exit code 1 (or 2 for bad
// input), and leaves the old container running, serving and unchanged, with
// traffic through the relay undisturbed.
func TestFailedDeploysLeaveOldServing(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	sick := e.version("sick", "sick", map[string]string{"MODE": "never-healthy"})
	crash := e.version("crash", "crash", map[string]string{"MODE": "crash"})
	hostPort := testenv.FreePort(t)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	published := "http://127.0.0.1:" + itoa(hostPort) + "/"
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{"127.0.0.1:" + itoa(hostPort)}})
	// Set up the relay with a first deploy (to v1 again, forced).
	e.mustDeploy("--force", "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", name)
	id := e.inspect(name).ID
	upstream := readFile(t, ng.UpstreamFile())

	load := startLoad(t, ng.URL()+"/", 4*time.Minute)
	cases := []struct {
		name     string
		args     []string
		before   func()
		after    func()
		wantCode int
		wantErr  string
		maxTime  time.Duration
	}{
		// Unhealthy after the 10 s start period and 3 checks 2 s apart (testenv.DefaultHealthInterval): well before the 40 s timeout.
		{name: "never healthy", args: []string{"--image", sick, "--health-timeout", "40s"}, wantCode: 1, wantErr: "never healthy", maxTime: 30 * time.Second},
		{name: "crashes at start", args: []string{"--image", crash}, wantCode: 1, wantErr: "crashing at start", maxTime: 20 * time.Second},
		{name: "missing tag", args: []string{"--image", e.reg.Addr() + "/" + e.repo + ":nope"}, wantCode: 1, wantErr: "not found"},
		{name: "registry down", args: []string{"--image", v2},
			before: func() {
				if err := e.reg.Stop(); err != nil {
					t.Fatal(err)
				}
			},
			after:    func() { e.reg.Start(t) },
			wantCode: 1, wantErr: "connection refused"},
		{name: "health timeout", args: []string{"--image", v2, "--health-timeout", "1ms"}, wantCode: 1, wantErr: "not healthy"},
		{name: "bad pull policy", args: []string{"--image", v2, "--pull", "sometimes"}, wantCode: 2, wantErr: "--pull"},
		{name: "probe path without slash", args: []string{"--image", v2, "--http-probe", "healthz"}, wantCode: 2, wantErr: "must be a path"},
		{name: "upstream without reload", args: []string{"--image", v2, "--nginx-upstream", "/tmp/x.conf", "--nginx-reload", ""}, wantCode: 2, wantErr: "--nginx-upstream needs"},
		{name: "bad image reference", args: []string{"--image", "UPPER/Case:tag"}, wantCode: 2, wantErr: "not a valid image reference"},
		{name: "unknown flag", args: []string{"--colour"}, wantCode: 2, wantErr: "flag provided but not defined"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			r := e.run(append(append([]string{"deploy"}, tc.args...), name)...)
			if tc.after != nil {
				tc.after()
			}
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tc.wantCode, r.stderr)
			}
			last := lastLine(r.stderr)
			if !strings.HasPrefix(last, "baton: ") || !strings.Contains(last, tc.wantErr) {
				t.Fatalf("last stderr line %q should be one baton error saying %q", last, tc.wantErr)
			}
			if tc.wantCode == 1 && !strings.Contains(last, name+" keeps serving") {
				t.Fatalf("error does not say the old container keeps serving: %q", last)
			}
			if tc.maxTime > 0 && r.took > tc.maxTime {
				t.Fatalf("took %s: a failing new container should fail the deploy early", r.took)
			}
			e.assertUntouched(name, id, published, "v1")
			assertServes(t, ng.URL()+"/", "v1")
			if got := readFile(t, ng.UpstreamFile()); got != upstream {
				t.Fatalf("upstream file changed:\n%s\nwas:\n%s", got, upstream)
			}
		})
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if v := res.Versions(); len(v) != 1 || v["v1"] == 0 {
		t.Fatalf("versions served %v, want only v1", v)
	}
}

// TestTargetProblems: a missing target or one that is not running is bad
// input (exit 2) and changes nothing.
func TestTargetProblems(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	name := testenv.UniqueName("web-")
	id := e.runWeb(name, v1)

	r := e.run("deploy", "no-such-container-"+name)
	if r.code != 2 || !strings.Contains(r.stderr, "no container named") {
		t.Fatalf("missing target: exit %d, %q", r.code, r.stderr)
	}
	if err := e.cli.ContainerStop(t.Context(), name, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	r = e.run("deploy", name)
	if r.code != 2 || !strings.Contains(r.stderr, "docker start "+name) {
		t.Fatalf("stopped target: exit %d, %q", r.code, r.stderr)
	}
	c := e.inspect(name)
	if c.ID != id || c.State.Running {
		t.Fatalf("the stopped container was touched: %s %s", c.ID, c.State.Status)
	}
	if n := len(e.appContainers(name)); n != 0 {
		t.Fatalf("%d containers created", n)
	}
}

// TestRelayPortTaken: the relay's host port is held by a third container's
// published port; the deploy fails naming the address and the kernel's
// reason, and the old container serves on.
func TestRelayPortTaken(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	id := e.runWeb(name, v1)
	taken := testenv.FreePort(t)
	testenv.RunDemo(t, e.cli, testenv.RunOpts{Image: v1, Publish: []string{"127.0.0.1:" + itoa(taken) + ":8080"}})
	upstream := t.TempDir() + "/web.conf"
	r := e.run("deploy", "--image", v2, "--nginx-upstream", upstream, "--nginx-reload", "true", "--relay-port", itoa(taken), name)
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "127.0.0.1:"+itoa(taken)) || !strings.Contains(lastLine(r.stderr), "address already in use") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	e.assertUntouched(name, id, "", "")
	if _, err := e.cli.ContainerInspect(t.Context(), "baton-relay-"+name); !isNotFound(err) {
		t.Fatalf("a half-made relay container was left: %v", err)
	}
	if _, err := os.Stat(upstream); err == nil {
		t.Fatal("the upstream file was written although the relay never ran")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
