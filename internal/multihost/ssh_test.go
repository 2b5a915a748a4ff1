package multihost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

const sshRepo = "h10c/web"

// TestRolloutOverSSH rolls one service across two engines behind one nginx
// here, the second reached only over ssh:// (a docker context naming
// ssh://root@ADDR/SOCKET; Debian's sshd in that host's namespace, a key made
// by the test): its relay is controlled, and its new containers probed
// (--http-probe) and warmed up, through docker exec in its relay container,
// over ssh. Under steady keep-alive GET/POST load, no request may fail
// while: the service's tag moves in a registry and one `baton watch --once
// --hosts` pass runs one rollout over both hosts, and so does one webhook to
// `baton serve --hosts` after the tag moved again; a single-host deploy of
// the shared service is refused (exit 2, nothing changed) and the same
// change as a rollout goes through. Then each engine's journal, in its own
// state directory, reads alike through history across hosts and through a
// single-host history of that engine. Plain rollouts under load with an ssh
// host (ten, a failure, a rollback, a kill in the ssh host's middle) are
// TestRolloutAcrossHosts's; this test keeps what only it proves. About 2.5
// minutes here while another suite runs beside it.
func TestRolloutOverSSH(t *testing.T) {
	testenv.Docker(t) // -short skips; make test runs it
	start := time.Now()
	m := &multiHost{
		t:        t,
		hosts:    engineHosts(t, "h10c", 230, 2),
		baton:    testenv.BuildBinary(t, "./cmd/baton"),
		stateDir: t.TempDir(),
		name:     "h10c-web",
		repo:     sshRepo,
	}
	ssh := m.hosts[1].StartSSH(t)
	// Contexts: the rollout reaches host 2 by its context (over ssh) and
	// host 1 by the hosts file's docker-host=; single-host runs name
	// either by its context.
	remote, local := m.hosts[1].Name, m.hosts[0].Name
	m.useContexts(map[string]string{remote: ssh.DockerHost, local: m.hosts[0].Socket}, ssh.Env)
	m.engineURL = []string{m.hosts[0].Socket, ssh.DockerHost}
	t.Logf("two engines and sshd up in %s", time.Since(start).Round(100*time.Millisecond))
	m.runDemoV2()
	h1, h2 := m.hosts[0], m.hosts[1]
	m.hostsFile = filepath.Join(t.TempDir(), "hosts")
	hostsText := fmt.Sprintf("host1 relay-address=%s docker-host=%s\n%s relay-address=%s\n", h1.Addr, h1.Socket, remote, h2.Addr)
	if err := os.WriteFile(m.hostsFile, []byte(hostsText), 0o600); err != nil {
		t.Fatal(err)
	}
	upDir := filepath.Join(t.TempDir(), "nginx")
	if err := os.MkdirAll(upDir, 0o755); err != nil {
		t.Fatal(err)
	}
	m.nginx = testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: filepath.Join(upDir, "web.conf")})
	m.relayPort = testenv.FreePort(t)
	t.Logf("set-up done in %s", time.Since(start).Round(100*time.Millisecond))

	// (The hosts run v2 and move to v1 here, so the registry's tag below,
	// v2, is new to both.)
	// The first rollout puts a relay on each host (host 2's made and
	// controlled over ssh) and lists both in the upstream file.
	r := m.deploy("--image", m.image("v1"), "--nginx-upstream", m.nginx.UpstreamFile(), "--nginx-reload", m.nginx.ReloadCommand(),
		"--relay-port", strconv.Itoa(m.relayPort), "--port", "8080", "--http-probe", "/healthz", "--warmup-requests", "3")
	m.expect(r, 0, "deployed deployed")
	// Host 2's probes ran the remote way (from its relay container, over
	// ssh); host 1's from here.
	var remoteProbe, localProbe bool
	for _, line := range strings.Split(r.stdout, "\n") {
		var ev struct {
			Type, Host, Message string
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Type != "event" || !strings.Contains(ev.Message, "GET /healthz") {
			continue
		}
		via := strings.Contains(ev.Message, "from the service's relay container")
		remoteProbe = remoteProbe || (ev.Host == remote && via)
		localProbe = localProbe || (ev.Host == "host1" && !via)
	}
	if !remoteProbe || !localProbe {
		t.Fatalf("probes: over ssh from the relay container on host 2 %v, directly on host 1 %v; want both\n%s", remoteProbe, localProbe, r.stdout)
	}
	m.assertImages("v1", "v1")
	m.assertServing("v1", "v1")

	load, err := loadgen.Start(t.Context(), loadgen.Config{URL: m.nginx.URL(), Clients: 8, Duration: 10 * time.Minute, Rate: 25})
	if err != nil {
		t.Fatal(err)
	}
	loadStopped := false
	stopLoad := func() {
		if loadStopped {
			return
		}
		loadStopped = true
		res := load.Stop()
		testenv.CheckLoad(t, res)
		t.Logf("versions served: %v", res.Versions())
	}
	defer stopLoad()

	// watch across hosts: the tag the service runs moves in the registry,
	// and one watch pass runs one rollout over both hosts, one at a time
	// (host 2, the last, is the one checked, over ssh). The registry is
	// this test's, on each engine's loopback through a forwarder.
	reg := testenv.StartRegistry(t, testenv.RegistryOpts{})
	_, portText, _ := net.SplitHostPort(reg.Addr())
	port, _ := strconv.Atoi(portText)
	for _, h := range m.hosts {
		h.ForwardLoopback(t, port)
	}
	live := reg.Push(t, h1.Client, m.image("v2"), sshRepo+":live")
	m.expect(m.run("deploy", m.name, "--image", live, "--hosts", m.hostsFile, "--json"), 0, "deployed deployed")
	m.assertServing("v2", "v2")
	reg.Push(t, h1.Client, m.image("v1"), sshRepo+":live")
	watchStart := time.Now()
	w := m.run("watch", "--once", "--all", "--hosts", m.hostsFile)
	if w.code != 0 || !strings.Contains(w.stderr, "each deploy is a rollout") || strings.Count(w.stderr, "new image in the registry; deploy queued") != 1 {
		t.Fatalf("watch --once across hosts: exit %d, want 0 with one rollout queued\n%s", w.code, w.stderr)
	}
	t.Logf("watch --once: one rollout over both hosts in %s", time.Since(watchStart).Round(100*time.Millisecond))
	runsLive := func(when string) {
		t.Helper()
		for _, h := range m.hosts {
			c, err := h.Client.ContainerInspect(t.Context(), m.name)
			if err != nil || c.Config.Image != live || !c.State.Running {
				t.Fatalf("host %s %s: %v, image %s, want running %s", h.Name, when, err, c.Config.Image, live)
			}
		}
	}
	runsLive("after watch")
	m.assertServing("v1", "v1")

	// serve across hosts: a webhook for the moved tag runs one rollout.
	reg.Push(t, h1.Client, m.image("v2"), sshRepo+":live")
	m.webhookRollout(live)
	runsLive("after the webhook")
	m.assertServing("v2", "v2")
	rj, err := os.ReadFile(filepath.Join(m.stateDir, "rollouts", "journal.jsonl"))
	if err != nil || strings.Count(string(rj), "\n") != 2 || !strings.Contains(string(rj), `"trigger":"watch"`) ||
		!strings.Contains(string(rj), `"trigger":"webhook"`) || strings.Count(string(rj), `"outcome":"deployed"`) != 2 {
		t.Fatalf("rollouts journal: %v\n%s\nwant one deployed rollout by watch and one by webhook", err, rj)
	}

	// A deploy on one host of the shared service would rewrite the upstream
	// file with that host's relay only: refused before any change.
	up, err := os.ReadFile(m.nginx.UpstreamFile())
	if err != nil {
		t.Fatal(err)
	}
	one := m.run("deploy", m.name, "--image", m.image("v1"), "--pull", "never", "--context", local)
	if one.code != 2 || !strings.Contains(one.stderr, "lists the relays of several hosts") || !strings.Contains(one.stderr, "--hosts") {
		t.Fatalf("single-host deploy of the shared service on host 1: exit %d, stderr %q; want 2 naming --hosts", one.code, one.stderr)
	}
	// On the ssh host alone the recorded nginx (this machine's) is out of
	// reach anyway: refused too.
	if one := m.run("deploy", m.name, "--image", m.image("v1"), "--pull", "never", "--context", remote); one.code != 2 {
		t.Fatalf("single-host deploy of the shared service over ssh: exit %d, stderr %q; want 2", one.code, one.stderr)
	}
	runsLive("after the refused deploys")
	if after, _ := os.ReadFile(m.nginx.UpstreamFile()); string(after) != string(up) {
		t.Fatalf("the refused deploy changed the upstream file:\n%s\nwas\n%s", after, up)
	}
	// Control: the same change as a rollout goes through.
	m.expect(m.deploy("--image", m.image("v1")), 0, "deployed deployed")
	m.assertImages("v1", "v1")
	stopLoad()
	m.assertServing("v1", "v1")

	// Each engine's journal is in its own state directory, read alike by
	// history across hosts and by a single-host history of that engine.
	hist := m.run("history", m.name, "--hosts", m.hostsFile, "--json", "--limit", "0")
	var entries []struct {
		Host     string `json:"host"`
		NewImage string `json:"new_image"`
		Outcome  string `json:"outcome"`
	}
	if err := json.Unmarshal([]byte(hist.stdout), &entries); hist.code != 0 || err != nil {
		t.Fatalf("history across hosts: exit %d, %v: %s", hist.code, err, hist.stdout)
	}
	deployed, all := map[string]int{}, map[string]int{}
	for _, e := range entries {
		all[e.Host]++
		if e.Outcome == "deployed" {
			deployed[e.Host]++
		}
	}
	// first, the registry's tag, watch's, the webhook's, the last
	if deployed["host1"] != 5 || deployed[remote] != 5 || len(all) != 2 {
		t.Fatalf("history across hosts: deployed per host %v (all %v); want 5 on each of the two hosts", deployed, all)
	}
	for name, label := range map[string]string{remote: remote, local: "host1"} {
		single := m.run("history", m.name, "--json", "--limit", "0", "--context", name)
		var own []json.RawMessage
		if err := json.Unmarshal([]byte(single.stdout), &own); single.code != 0 || err != nil || len(own) != all[label] {
			t.Fatalf("history of %s alone: exit %d, %v, %d entries; want the %d the rollout's history shows for it", name, single.code, err, len(own), all[label])
		}
	}
	for _, h := range m.hosts {
		m.assertSingle(h)
	}
	t.Logf("whole test %s", time.Since(start).Round(100*time.Millisecond))
}

// webhookRollout runs baton serve across the hosts, asks it over HTTP to
// deploy image, waits for the request to finish (deployed) and stops serve
// (exit 0).
func (m *multiHost) webhookRollout(image string) {
	t := m.t
	t.Helper()
	token := "h10c-webhook-token-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := m.command("serve", "--listen", addr, "--all", "--hosts", m.hostsFile)
	cmd.Env = append(cmd.Env, "BATON_WEBHOOK_TOKEN="+token)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() {
		if !exited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		t.Logf("baton serve --hosts: %s", lastLines(stderr.String(), 6))
	}()
	call := func(method, path, body string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	start := time.Now()
	for {
		if code, _, err := call("GET", "/healthz", ""); err == nil && code == 200 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("baton serve did not answer: %s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, body, err := call("POST", "/v1/deploy/"+m.name, `{"image":"`+image+`"}`)
	var acc struct {
		ID string `json:"id"`
	}
	if err != nil || code != http.StatusAccepted || json.Unmarshal(body, &acc) != nil || acc.ID == "" {
		t.Fatalf("webhook: %d %v %s", code, err, body)
	}
	var st struct {
		State string `json:"state"`
		Error string `json:"error"`
	}
	for {
		code, body, err := call("GET", "/v1/deploys/"+acc.ID, "")
		if err != nil || code != 200 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("webhook status: %d %v %s", code, err, body)
		}
		if st.State != "queued" && st.State != "running" {
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("webhook request still %s after 5 min", st.State)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("webhook: one rollout over both hosts, %s in %s", st.State, time.Since(start).Round(100*time.Millisecond))
	if st.State != "deployed" {
		t.Fatalf("webhook request ended %s: %s", st.State, st.Error)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("baton serve after SIGTERM: %v", err)
	}
	if !strings.Contains(stderr.String(), "each deploy is a rollout") {
		t.Fatalf("serve did not run across hosts: %s", stderr.String())
	}
}

// syncBuffer is a bytes.Buffer a process writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
