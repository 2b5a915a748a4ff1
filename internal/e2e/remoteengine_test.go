package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// remoteEngine is a Docker engine of its own for one test: a current
// dockerd (scripts/docker-current under a unique name) in its own network
// namespace, joined to the test's namespace by a veth pair. Its containers'
// addresses live in that namespace, so from baton (in the test's
// namespace) it is as remote as another machine's engine; only its socket
// file is shared, and the veth address, where sshd listens.
type remoteEngine struct {
	name string // netns and docker-current name
	sock string // unix:///run/<name>/docker.sock
	addr string // its end of the veth pair
	cli  *client.Client
}

func startRemoteEngine(t *testing.T) *remoteEngine {
	t.Helper()
	testenv.Docker(t) // the integration-test gate (-short skips)
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	suffix := hex.EncodeToString(b[:])
	r := &remoteEngine{name: "h10a-" + suffix}
	script := filepath.Join(root, "scripts", "docker-current")
	dc := func(args ...string) (string, error) {
		cmd := exec.CommandContext(context.WithoutCancel(t.Context()), script, args...)
		cmd.Env = append(os.Environ(), "BATON_DOCKER_CURRENT_NAME="+r.name)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("docker-current %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out)), nil
	}
	t.Cleanup(func() {
		if _, err := dc("stop"); err != nil {
			t.Errorf("stopping engine %s: %v", r.name, err)
		}
	})
	if r.sock, err = dc("start"); err != nil {
		t.Fatal(err)
	}
	r.cli, err = client.NewClientWithOpts(client.WithHost(r.sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cli.Close() })

	// The veth pair: 10.231.N.1 here, 10.231.N.2 in the engine's namespace.
	n := int(b[0])
	here, there := "h10a"+suffix+"a", "h10a"+suffix+"b"
	r.addr = fmt.Sprintf("10.231.%d.2", n)
	ipCmd(t, "link", "add", here, "type", "veth", "peer", "name", there, "netns", r.name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", here).Run() })
	ipCmd(t, "addr", "add", fmt.Sprintf("10.231.%d.1/30", n), "dev", here)
	ipCmd(t, "link", "set", here, "up")
	ipCmd(t, "-n", r.name, "addr", "add", r.addr+"/30", "dev", there)
	ipCmd(t, "-n", r.name, "link", "set", there, "up")
	return r
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// sshTo runs sshd in the engine's namespace on its veth address
// (testenv.StartSSHD) and returns the user and the environment that makes
// baton's ssh (the docker CLI's connection helper runs `ssh` from PATH) use
// the test's keys.
func (r *remoteEngine) sshTo(t *testing.T) (user string, env []string) {
	t.Helper()
	return testenv.StartSSHD(t, r.name, r.addr)
}

// withEnv is os.Environ() without the named variables, plus extra.
func withEnv(unset []string, extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, u := range unset {
			drop = drop || k == u
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// batonEnv runs baton with exactly env (tests here choose DOCKER_HOST,
// DOCKER_CONTEXT and DOCKER_CONFIG themselves).
func (e *env) runWithEnv(env []string, args ...string) batonRun {
	e.t.Helper()
	cmd := exec.CommandContext(e.t.Context(), e.baton, args...)
	cmd.Env = append(env, "BATON_STATE_DIR="+e.stateDir, "BATON_UPSTREAM_DIRS="+os.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := batonRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("running baton: %v", err)
	}
	e.t.Logf("baton %s -> exit %d in %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// remoteEnv is an env whose containers are on engine r.
func remoteEnv(t *testing.T, r *remoteEngine) *env {
	return &env{
		t:        t,
		cli:      r.cli,
		baton:    testenv.BuildBinary(t, "./cmd/baton"),
		stateDir: t.TempDir(),
		net:      testenv.Network(t, r.cli, "", false),
	}
}

func imageOf(t *testing.T, cli *client.Client, name string) string {
	t.Helper()
	c, err := cli.ContainerInspect(t.Context(), name)
	if err != nil {
		t.Fatalf("inspect %s: %v", name, err)
	}
	if !c.State.Running {
		t.Fatalf("%s is %s", name, c.State.Status)
	}
	return c.Config.Image
}

// TestDockerContextsChooseTheEngine: baton talks to the engine the docker
// CLI would, by --context (before the verb or after the target),
// DOCKER_CONTEXT and `docker context use`, and status says which; a
// context that does not exist and an engine that does not answer fail in
// one line naming them. The context is made by the real docker CLI in a
// config directory of the test's own.
func TestDockerContextsChooseTheEngine(t *testing.T) {
	r := startRemoteEngine(t)
	e := remoteEnv(t, r)
	local := testenv.Docker(t)
	cfg := t.TempDir()
	ctxName := "h10a-" + strings.TrimPrefix(r.name, "h10a-")
	docker := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "docker", args...)
		cmd.Env = withEnv([]string{"DOCKER_HOST", "DOCKER_CONTEXT"}, "DOCKER_CONFIG="+cfg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	docker("context", "create", ctxName, "--docker", "host="+r.sock)
	docker("context", "create", ctxName+"-dead", "--docker", "host=unix://"+filepath.Join(cfg, "nothing.sock"))

	v1, _ := testenv.DemoImage(t, r.cli, testenv.DemoImageOpts{Version: "v1", HealthCheck: true})
	v2, _ := testenv.DemoImage(t, r.cli, testenv.DemoImageOpts{Version: "v2", HealthCheck: true})
	name := testenv.UniqueName("h10a-ctx-")
	id := testenv.RunDemo(t, r.cli, testenv.RunOpts{Name: name, Image: v1, Network: e.net})
	testenv.WaitHealthy(t, r.cli, id, 60*time.Second)
	e.cleanupService(name)

	// Whatever engine the test process otherwise uses (DOCKER_HOST in the
	// current-engine pass) is still in the environment: --context wins.
	base := append(withEnv([]string{"DOCKER_CONTEXT"}), "DOCKER_CONFIG="+cfg)
	res := e.runWithEnv(base, "--context", ctxName, "deploy", name, "--image", v2, "--pull", "never")
	if res.code != 0 {
		t.Fatalf("deploy --context %s: exit %d", ctxName, res.code)
	}
	if got := imageOf(t, r.cli, name); got != v2 {
		t.Fatalf("%s on the context's engine runs %s, want %s", name, got, v2)
	}
	if _, err := local.ContainerInspect(t.Context(), name); !errdefs.IsNotFound(err) {
		t.Fatalf("the test's own engine has a container %s (err %v): the deploy went to the wrong engine", name, err)
	}
	// Flags after the target.
	if res := e.runWithEnv(base, "deploy", name, "--image", v1, "--pull", "never", "--context", ctxName); res.code != 0 {
		t.Fatalf("deploy NAME ... --context: exit %d", res.code)
	}
	if got := imageOf(t, r.cli, name); got != v1 {
		t.Fatalf("%s runs %s after the second deploy, want %s", name, got, v1)
	}

	wantEngine := fmt.Sprintf("engine: docker context %q (%s)", ctxName, r.sock)
	noHost := []string{"DOCKER_HOST", "DOCKER_CONTEXT"}
	// DOCKER_CONTEXT.
	st := e.runWithEnv(withEnv(noHost, "DOCKER_CONFIG="+cfg, "DOCKER_CONTEXT="+ctxName), "status", name)
	if st.code != 0 || !strings.Contains(st.stdout, wantEngine) || !strings.Contains(st.stdout, v1) {
		t.Fatalf("status with DOCKER_CONTEXT: exit %d, stdout %q; want %q and %s", st.code, st.stdout, wantEngine, v1)
	}
	// docker context use, and JSON naming the engine.
	docker("context", "use", ctxName)
	st = e.runWithEnv(withEnv(noHost, "DOCKER_CONFIG="+cfg), "status", name, "--json")
	var list []struct {
		Container, Image, Engine string
		EngineHost               string `json:"engine_host"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &list); err != nil || st.code != 0 || len(list) != 1 {
		t.Fatalf("status --json after docker context use: exit %d, %v: %q", st.code, err, st.stdout)
	}
	if list[0].Engine != ctxName || list[0].EngineHost != r.sock || list[0].Image != v1 {
		t.Fatalf("status --json: %+v, want engine %s at %s running %s", list[0], ctxName, r.sock, v1)
	}

	// Refusals, each one line naming what failed.
	for _, tc := range []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"--context", "h10a-nope", "status"}, 2, `docker context "h10a-nope": no such docker context`},
		{[]string{"status", "--context", ctxName + "-dead"}, 1, fmt.Sprintf("docker context %q (unix://%s): cannot reach the Docker engine", ctxName+"-dead", filepath.Join(cfg, "nothing.sock"))},
		// Two contexts are a rollout across hosts; one that does not answer
		// fails it before any host changes.
		{[]string{"deploy", name, "--context", ctxName, "--context", ctxName + "-dead"}, 1, "engine does not answer, so no host was changed"},
	} {
		res := e.runWithEnv(withEnv(noHost, "DOCKER_CONFIG="+cfg), tc.args...)
		msg := strings.TrimSpace(res.stderr)
		if res.code != tc.code || !strings.Contains(msg, tc.contains) || strings.Contains(msg, "\n") {
			t.Errorf("baton %s: exit %d, stderr %q; want exit %d and one line with %q", strings.Join(tc.args, " "), res.code, msg, tc.code, tc.contains)
		}
	}
	// Nothing changed by the refusals.
	if got := imageOf(t, r.cli, name); got != v1 {
		t.Fatalf("%s runs %s after the refusals, want %s", name, got, v1)
	}
}

// TestRemoteEngineOverSSH deploys through DOCKER_HOST=ssh://root@ADDR/SOCK
// (the docker CLI's connection helper, a real sshd, `docker system
// dial-stdio` run there) to an engine whose containers baton cannot reach:
// probes, warm-up requests and relay control go through the relay
// container, and nginx (a container on that engine, published on the
// namespace's address) gets its upstream file through the Docker API.
// Under GET/POST keep-alive load through that nginx, no request fails.
// About 3.5 minutes on this 2-core machine (an engine of its own, images
// imported into it, two deploys over ssh).
func TestRemoteEngineOverSSH(t *testing.T) {
	r := startRemoteEngine(t)
	user, sshEnv := r.sshTo(t)
	e := remoteEnv(t, r)
	host := "ssh://" + user + "@" + r.addr + strings.TrimPrefix(r.sock, "unix://")
	benv := withEnv([]string{"DOCKER_HOST", "DOCKER_CONTEXT", "PATH"}, append(sshEnv, "DOCKER_HOST="+host)...)

	v1, _ := testenv.DemoImage(t, r.cli, testenv.DemoImageOpts{Version: "v1", HealthCheck: true})
	v2, _ := testenv.DemoImage(t, r.cli, testenv.DemoImageOpts{Version: "v2", HealthCheck: true})
	name := testenv.UniqueName("h10a-ssh-")
	id := testenv.RunDemo(t, r.cli, testenv.RunOpts{Name: name, Image: v1, Network: e.net})
	testenv.WaitHealthy(t, r.cli, id, 60*time.Second)
	e.cleanupService(name)
	ng := testenv.ContainerNginx(t, r.cli, testenv.NginxOpts{Network: e.net, PublishIP: r.addr})

	flags := []string{"--pull", "never", "--port", "8080", "--http-probe", "/healthz", "--warmup-requests", "3",
		"--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container()}
	// The first deploy sets the relay up and points nginx at it (one
	// reload, before any load).
	if res := e.runWithEnv(benv, append([]string{"deploy", name, "--image", v2}, flags...)...); res.code != 0 {
		t.Fatalf("first deploy over ssh: exit %d", res.code)
	}
	assertServes(t, ng.URL()+"/", "v2")
	st := e.runWithEnv(benv, "status", name)
	if st.code != 0 || !strings.Contains(st.stdout, "engine: DOCKER_HOST="+host) || !strings.Contains(st.stdout, "relay") {
		t.Fatalf("status over ssh: exit %d, stdout %q; want the engine named and the relay", st.code, st.stdout)
	}

	load, err := loadgen.Start(t.Context(), loadgen.Config{URL: ng.URL() + "/", Clients: 8, Duration: 3 * time.Minute, Rate: loadRate, AllowHosts: []string{r.addr}})
	if err != nil {
		t.Fatal(err)
	}
	// One deploy under load (the suite runs on 2 cores, and each deploy
	// over ssh takes half a minute); back to v1, so the answers change.
	for i, ref := range []string{v1} {
		start := time.Now()
		res := e.runWithEnv(benv, append([]string{"deploy", name, "--image", ref}, flags...)...)
		if res.code != 0 {
			load.Stop()
			t.Fatalf("deploy %d over ssh under load: exit %d", i+2, res.code)
		}
		t.Logf("deploy %d over ssh: %s", i+2, time.Since(start).Round(time.Millisecond))
		if got := imageOf(t, r.cli, name); got != ref {
			load.Stop()
			t.Fatalf("%s runs %s, want %s", name, got, ref)
		}
	}
	testenv.CheckLoad(t, load.Stop())
	assertServes(t, ng.URL()+"/", "v1")

	// Only the service's container and its relay are left on the engine.
	list, err := r.cli.ContainerList(t.Context(), container.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		n := strings.TrimPrefix(c.Names[0], "/")
		if n != name && n != ng.Container() && !strings.HasPrefix(n, "baton-relay-") {
			t.Errorf("leftover container %s (%s) on the remote engine", n, c.State)
		}
	}
}
