// Package multihost proves a rollout across several Docker engines (issue
// 10): its own package, so its minutes of engines and load run beside the
// other packages' tests rather than after the e2e package's.
package multihost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/rollout"
	"github.com/baton-sh/baton/internal/state"
	"github.com/baton-sh/baton/internal/testenv"
)

// multiHost is one service on three engine hosts behind one nginx on this
// machine, the way issue 10 asks to prove a rollout across hosts.
type multiHost struct {
	t         *testing.T
	hosts     []*testenv.EngineHost
	baton     string
	stateDir  string
	hostsFile string
	nginx     *testenv.Nginx
	relayPort int
	name      string
	// repo is the demo images' repository (mhRepo unless set); env is
	// added to every baton run's environment.
	repo string
	env  []string
	// engineURL is each host's engine URL as baton resolves it, which keys
	// its state directory (the socket unless set).
	engineURL []string
}

func (m *multiHost) image(tag string) string { return m.repoName() + ":" + tag }

// repoName is the demo images' repository.
func (m *multiHost) repoName() string {
	if m.repo != "" {
		return m.repo
	}
	return mhRepo
}

const mhRepo = "h10b/web"

// engineHosts starts n engine hosts named by prefix on 10.<net>.x.x;
// BATON_MULTIHOST_PREFIX and BATON_MULTIHOST_NET override both, so a
// developer's run on a machine where a CI run holds the default prefix's
// lock neither waits for it nor shares its addresses.
func engineHosts(t *testing.T, prefix string, net, n int) []*testenv.EngineHost {
	t.Helper()
	if p := os.Getenv("BATON_MULTIHOST_PREFIX"); p != "" {
		prefix = p
	}
	if v := os.Getenv("BATON_MULTIHOST_NET"); v != "" {
		second, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("BATON_MULTIHOST_NET=%q: not a number", v)
		}
		net = second
	}
	return testenv.StartEngineHosts(t, testenv.EngineHostsOpts{Prefix: prefix, N: n, Net: net})
}

// useContexts gives every baton run of m a docker CLI config of the test's
// own (DOCKER_CONFIG) holding one context per name, each with that docker
// host, plus env (an EngineSSH's, so ssh:// reaches the test's sshd).
func (m *multiHost) useContexts(contexts map[string]string, env []string) {
	m.t.Helper()
	cfg := m.t.TempDir()
	m.env = append([]string{"DOCKER_CONFIG=" + cfg}, env...)
	for name, host := range contexts {
		cmd := exec.CommandContext(m.t.Context(), "docker", "context", "create", name, "--docker", "host="+host)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfg)
		if out, err := cmd.CombinedOutput(); err != nil {
			m.t.Fatalf("docker context create %s: %v: %s", name, err, out)
		}
	}
}

// TestRolloutAcrossHosts deploys one service on three Docker engines (each in
// its own network namespace, joined by a veth) behind one host nginx that
// balances across the three hosts' relays, under steady keep-alive GET/POST
// load for the whole test: ten rolling deploys; an image that fails on host
// 2 (host 1 keeps the new version, 2 and 3 the old, all serving); the same
// with --rollback-on-failure (host 1 back on the old); baton killed in the
// middle of host 2, and the next run converging. No request may fail.
// Hosts 1 and 3 are reached over their unix sockets, host 2 only over
// ssh:// (a docker context naming ssh://root@ADDR/SOCKET; Debian's sshd in
// its namespace, a key made by the test), so host 2's failure, its rollback
// and the kill in its middle all go through the remote path (relay control
// through docker exec in its relay container, over ssh).
func TestRolloutAcrossHosts(t *testing.T) {
	testenv.Docker(t) // -short skips; make test runs it
	start := time.Now()
	m := &multiHost{
		t:        t,
		hosts:    engineHosts(t, "h10b", 210, 3),
		baton:    testenv.BuildBinary(t, "./cmd/baton"),
		stateDir: t.TempDir(),
		name:     "h10b-web",
	}
	// Host 2 is the context "host2", over ssh; nothing names its socket.
	ssh := m.hosts[1].StartSSH(t)
	m.useContexts(map[string]string{"host2": ssh.DockerHost}, ssh.Env)
	m.engineURL = []string{m.hosts[0].Socket, ssh.DockerHost, m.hosts[2].Socket}
	t.Logf("three engines and host 2's sshd up in %s", time.Since(start).Round(100*time.Millisecond))
	// v1 and v2 serve on every host; v3 never gets healthy on host 2 only.
	for i, h := range m.hosts {
		for _, v := range []string{"v1", "v2", "v3"} {
			env := map[string]string{"WARMUP": "300ms"}
			if v == "v3" && i == 1 {
				env["MODE"] = "never-healthy"
			}
			testenv.DemoImage(t, h.Client, testenv.DemoImageOpts{Repo: mhRepo, Tag: v, Version: v, Env: env, HealthCheck: true})
		}
		id := testenv.RunDemo(t, h.Client, testenv.RunOpts{Name: m.name, Image: mhRepo + ":v1"})
		testenv.WaitHealthy(t, h.Client, id, 60*time.Second)
		m.cleanupService(h)
	}
	var lines []string
	for i, h := range m.hosts {
		line := fmt.Sprintf("host%d relay-address=%s docker-host=%s", i+1, h.Addr, h.Socket)
		if i == 1 {
			line = fmt.Sprintf("host2 relay-address=%s", h.Addr) // its context: ssh://
		}
		lines = append(lines, line)
	}
	m.hostsFile = filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(m.hostsFile, []byte("# the three engines\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	upDir := filepath.Join(t.TempDir(), "nginx")
	if err := os.MkdirAll(upDir, 0o755); err != nil {
		t.Fatal(err)
	}
	m.nginx = testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: filepath.Join(upDir, "web.conf")})
	m.relayPort = testenv.FreePort(t)
	t.Logf("set-up done in %s", time.Since(start).Round(100*time.Millisecond))

	// The first rollout puts a relay on each host and lists the three in
	// the upstream file (one nginx reload per host, before any load).
	r := m.deploy("--image", mhRepo+":v2", "--nginx-upstream", m.nginx.UpstreamFile(), "--nginx-reload", m.nginx.ReloadCommand(),
		"--relay-port", strconv.Itoa(m.relayPort))
	m.expect(r, 0, "deployed deployed deployed")
	up, err := os.ReadFile(m.nginx.UpstreamFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range m.hosts {
		if !bytes.Contains(up, []byte(fmt.Sprintf("server %s:%d ", h.Addr, m.relayPort))) {
			t.Fatalf("upstream file lacks host %s's relay:\n%s", h.Name, up)
		}
	}
	m.assertImages("v2", "v2", "v2")

	load, err := loadgen.Start(t.Context(), loadgen.Config{URL: m.nginx.URL(), Clients: 8, Duration: 20 * time.Minute, Rate: 25})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		res := load.Stop()
		testenv.CheckLoad(t, res)
		t.Logf("versions served: %v", res.Versions())
	}()

	// Ten rolling deploys, alternating v1 and v2.
	var hostTimes []time.Duration
	rolloutStart := time.Now()
	for i := range 10 {
		v := []string{"v1", "v2"}[i%2]
		r := m.deploy("--image", mhRepo+":"+v)
		res := m.expect(r, 0, "deployed deployed deployed")
		for _, h := range res.Hosts {
			hostTimes = append(hostTimes, h.Duration)
		}
		m.assertImages(v, v, v)
	}
	t.Logf("10 rollouts in %s; per-host deploy times %v", time.Since(rolloutStart).Round(100*time.Millisecond), roundAll(hostTimes))
	if out, _ := os.ReadFile(m.nginx.UpstreamFile()); !bytes.Equal(out, up) {
		t.Fatalf("the upstream file changed during the rollouts:\n%s\nwas\n%s", out, up)
	}
	// (after the loop the hosts run v2)

	// --rollback-on-failure: host 1 takes v3, host 2 fails it, host 1 goes
	// back to v2; host 3 is never touched.
	r = m.deploy("--image", mhRepo+":v3", "--health-timeout", "30s", "--rollback-on-failure")
	m.expect(r, 1, "rolled-back failed not-run")
	m.assertImages("v2", "v2", "v2")
	m.assertServing("v2", "v2", "v2")

	// Without it the rollout stops at host 2: host 1 new, hosts 2 and 3
	// old, all serving.
	r = m.deploy("--image", mhRepo+":v3", "--health-timeout", "30s")
	res := m.expect(r, 1, "deployed failed not-run")
	if !strings.Contains(res.Summary, "stopped at host host2") {
		t.Fatalf("summary %q does not say where the rollout stopped", res.Summary)
	}
	m.assertImages("v3", "v2", "v2")
	m.assertServing("v3", "v2", "v2")

	// A dry run plans every host and changes none.
	r = m.deploy("--image", mhRepo+":v1", "--dry-run")
	m.expect(r, 0, "planned planned planned")
	m.assertImages("v3", "v2", "v2")

	// Status across hosts: one row per host, each on its image.
	st := m.run("status", m.name, "--hosts", m.hostsFile, "--json")
	if st.code != 0 {
		t.Fatalf("status exited %d: %s", st.code, st.stderr)
	}
	var statuses []struct {
		Host     string `json:"host"`
		Services []struct {
			Image string `json:"image"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &statuses); err != nil || len(statuses) != 3 {
		t.Fatalf("status --json: %v: %s", err, st.stdout)
	}
	for i, want := range []string{"v3", "v2", "v2"} {
		if len(statuses[i].Services) != 1 || statuses[i].Services[0].Image != mhRepo+":"+want {
			t.Fatalf("status of %s: %+v, want %s", statuses[i].Host, statuses[i].Services, want)
		}
	}

	// baton killed in the middle of host 2 (its new container is warming
	// up): the next run converges host 2 and finishes the rollout.
	killed, code := m.runUntil(func(host, phase string) bool { return host == "host2" && phase == "warm" },
		"deploy", m.name, "--image", mhRepo+":v1", "--pull", "never", "--hosts", m.hostsFile, "--json")
	if !killed {
		t.Fatalf("baton finished (exit %d) before host 2 warmed up", code)
	}
	m.assertImages("v1", "", "v2") // host 2: old or new, not yet known
	r = m.deploy("--image", mhRepo+":v1")
	m.expect(r, 0, "up-to-date deployed deployed")
	m.assertImages("v1", "v1", "v1")
	m.assertServing("v1", "v1", "v1")
	for _, h := range m.hosts {
		m.assertSingle(h)
	}
	// Host 2's state is its ssh:// engine's (assertSingle found it): no
	// run reached it by its socket.
	if _, err := os.Stat(state.EngineDir(m.stateDir, m.hosts[1].Socket)); !os.IsNotExist(err) {
		t.Fatalf("host 2 was reached over its unix socket too (state directory for %s: %v)", m.hosts[1].Socket, err)
	}
}

type batonRun struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond).String()
	}
	return out
}

func (m *multiHost) command(args ...string) *exec.Cmd {
	cmd := exec.CommandContext(m.t.Context(), m.baton, args...)
	cmd.Env = append(append(os.Environ(), "BATON_STATE_DIR="+m.stateDir, "BATON_UPSTREAM_DIRS="+os.TempDir()), m.env...)
	return cmd
}

func (m *multiHost) run(args ...string) batonRun {
	m.t.Helper()
	cmd := m.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := batonRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		m.t.Fatalf("running baton: %v", err)
	}
	m.t.Logf("baton %s -> exit %d in %s (%s to %s)\nstderr: %s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), start.Format("15:04:05.000"), time.Now().Format("15:04:05.000"), lastLines(r.stderr, 8))
	return r
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// deploy runs a rollout across the three hosts with --json.
func (m *multiHost) deploy(args ...string) batonRun {
	m.t.Helper()
	return m.run(append([]string{"deploy", m.name, "--pull", "never", "--hosts", m.hostsFile, "--json"}, args...)...)
}

// expect checks a rollout's exit code and per-host statuses, and returns
// its result.
func (m *multiHost) expect(r batonRun, code int, statuses string) rollout.Result {
	m.t.Helper()
	var res rollout.Result
	found := false
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, `{"type":"rollout"`) {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				m.t.Fatalf("rollout result: %v: %s", err, line)
			}
			found = true
		}
	}
	if !found {
		m.t.Fatalf("no rollout result in stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	var got []string
	for _, h := range res.Hosts {
		got = append(got, string(h.Status))
	}
	if r.code != code || res.ExitCode != code || strings.Join(got, " ") != statuses {
		m.t.Fatalf("rollout exited %d (result %d) with hosts %v, want %d with %s\n%s\nstderr:\n%s", r.code, res.ExitCode, got, code, statuses, res.Summary, r.stderr)
	}
	m.t.Logf("rollout: %s", res.Summary)
	return res
}

// assertImages checks the image each host's container runs ("" skips a
// host).
func (m *multiHost) assertImages(want ...string) {
	m.t.Helper()
	for i, h := range m.hosts {
		if want[i] == "" {
			continue
		}
		c, err := h.Client.ContainerInspect(m.t.Context(), m.name)
		if err != nil {
			m.t.Fatalf("host %s: %v", h.Name, err)
		}
		if !c.State.Running || c.Config.Image != m.image(want[i]) {
			m.t.Fatalf("host %s: %s is %s on %s, want running %s", h.Name, m.name, c.State.Status, c.Config.Image, want[i])
		}
	}
}

// assertServing checks each host's relay answers with the version that host
// should run, straight at the address nginx uses.
func (m *multiHost) assertServing(want ...string) {
	m.t.Helper()
	for i, h := range m.hosts {
		url := fmt.Sprintf("http://%s:%d/", h.Addr, m.relayPort)
		hc := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := hc.Get(url)
		if err != nil {
			m.t.Fatalf("host %s: GET %s: %v", h.Name, url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), want[i]+" ") {
			m.t.Fatalf("host %s: GET %s: %d %q, want %s", h.Name, url, resp.StatusCode, body, want[i])
		}
	}
}

// assertSingle checks a host has one app container for the service and no
// deploy record left.
func (m *multiHost) assertSingle(h *testenv.EngineHost) {
	m.t.Helper()
	list, err := h.Client.ContainerList(m.t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "baton.service="+m.name), filters.Arg("label", "baton.role=app"))})
	if err != nil {
		m.t.Fatal(err)
	}
	if len(list) != 1 {
		m.t.Fatalf("host %s: %d app containers for %s, want 1", h.Name, len(list), m.name)
	}
	// The engine's own state directory, as a single-host run on it uses.
	url := h.Socket
	for i, eh := range m.hosts {
		if eh == h && i < len(m.engineURL) {
			url = m.engineURL[i]
		}
	}
	dir := state.EngineDir(m.stateDir, url)
	if _, err := os.Stat(filepath.Join(dir, "services")); err != nil {
		m.t.Fatalf("host %s: no state directory of its engine: %v", h.Name, err)
	}
	recs, _ := filepath.Glob(filepath.Join(dir, "deploys", "*.json"))
	if len(recs) > 0 {
		m.t.Fatalf("host %s: deploy record left: %v", h.Name, recs)
	}
}

// runUntil runs baton with --json and SIGKILLs it at the first event for
// which stop returns true.
func (m *multiHost) runUntil(stop func(host, phase string) bool, args ...string) (killed bool, code int) {
	m.t.Helper()
	cmd := m.command(args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	dec := json.NewDecoder(stdout)
	for {
		var ev struct {
			Type  string `json:"type"`
			Host  string `json:"host"`
			Phase string `json:"phase"`
		}
		if err := dec.Decode(&ev); err != nil {
			break
		}
		if !killed && ev.Type == "event" && stop(ev.Host, ev.Phase) {
			killed = true
			_ = cmd.Process.Kill()
		}
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	m.t.Logf("baton %s: killed=%v exit=%d stderr: %s", strings.Join(args, " "), killed, code, lastLines(stderr.String(), 5))
	return killed, code
}

// runDemoV2 builds m's demo images v1 and v2 (a 300 ms warm-up, a
// HEALTHCHECK) on every host and runs v2 there as the service, healthy.
func (m *multiHost) runDemoV2() {
	m.t.Helper()
	for _, h := range m.hosts {
		for _, v := range []string{"v1", "v2"} {
			testenv.DemoImage(m.t, h.Client, testenv.DemoImageOpts{Repo: m.repoName(), Tag: v, Version: v, Env: map[string]string{"WARMUP": "300ms"}, HealthCheck: true})
		}
		id := testenv.RunDemo(m.t, h.Client, testenv.RunOpts{Name: m.name, Image: m.image("v2")})
		testenv.WaitHealthy(m.t, h.Client, id, 60*time.Second)
		m.cleanupService(h)
	}
}

// cleanupService removes what baton made on a host (the engine goes with
// the test anyway; this keeps a failed stop from leaving containers).
func (m *multiHost) cleanupService(h *testenv.EngineHost) {
	m.t.Cleanup(func() {
		list, err := h.Client.ContainerList(m.t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "baton.service="+m.name))})
		if err != nil {
			return
		}
		for _, c := range list {
			_ = h.Client.ContainerRemove(m.t.Context(), c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
	})
}
