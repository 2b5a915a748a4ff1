package multihost

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

const kernelRepo = "h13k/web"

// TestRolloutKernelPath proves the kernel path across hosts (issue 13): a
// rollout with --kernel-path puts, in each engine host's own firewall, a
// DNAT from the relay's address (where this machine's nginx connects) to
// the serving container, so the kernel carries nginx's connections there
// and no relay copies them; each later rollout moves traffic through the
// relay and back to the kernel for the new container; --kernel-path=false
// leaves nothing of baton's in either host's firewall. Host 1 is reached
// over its unix socket, host 2 only over ssh (a docker context), whose
// rules baton sets through the helper container there. Under keep-alive
// GET/POST load through the shared nginx for the whole test, no request
// may fail.
func TestRolloutKernelPath(t *testing.T) {
	testenv.Docker(t) // -short skips; make test runs it
	start := time.Now()
	m := &multiHost{
		t:        t,
		hosts:    engineHosts(t, "h13k", 200, 2),
		baton:    testenv.BuildBinary(t, "./cmd/baton"),
		stateDir: t.TempDir(),
		name:     "h13k-web",
		repo:     kernelRepo,
	}
	ssh := m.hosts[1].StartSSH(t)
	remote := m.hosts[1].Name
	m.useContexts(map[string]string{remote: ssh.DockerHost}, ssh.Env)
	m.engineURL = []string{m.hosts[0].Socket, ssh.DockerHost}
	m.runDemoV2()
	for _, h := range m.hosts {
		h := h
		t.Cleanup(func() {
			_ = exec.Command("docker", "-H", h.Socket, "rm", "-f", "baton-kernelpath").Run()
		})
	}
	h1, h2 := m.hosts[0], m.hosts[1]
	// The rig lets the controller's traffic into every network of a
	// host's engine (DOCKER-USER ACCEPTs and a MASQUERADE for the veth),
	// which host 1, a unix socket baton probes from here, needs; host 2 is
	// reached like another machine, by ssh, and gets none of that, so
	// there only baton's own rules can let the kernel path's connections
	// in and their answers out.
	unmask(t, h2)
	m.hostsFile = filepath.Join(t.TempDir(), "hosts")
	hostsText := fmt.Sprintf("host1 relay-address=%s docker-host=%s\n%s relay-address=%s\n", h1.Addr, h1.Socket, remote, h2.Addr)
	if err := os.WriteFile(m.hostsFile, []byte(hostsText), 0o600); err != nil {
		t.Fatal(err)
	}
	upDir := filepath.Join(t.TempDir(), "nginx")
	if err := os.MkdirAll(upDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// nginx keeps upstream connections (for at most 1 s, as the README
	// asks): connections the kernel carries stay open across a switch and
	// across --kernel-path=false, whose ACCEPT must outlive them.
	m.nginx = testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: filepath.Join(upDir, "web.conf"), Upstream: testenv.KeepaliveUpstream, Location: testenv.KeepaliveLocation})
	m.relayPort = testenv.FreePort(t)
	t.Logf("set-up done in %s", time.Since(start).Round(100*time.Millisecond))

	m.expect(m.deploy("--image", m.image("v1"), "--nginx-upstream", m.nginx.UpstreamFile(), "--nginx-reload", m.nginx.ReloadCommand(),
		"--relay-port", strconv.Itoa(m.relayPort), "--port", "8080", "--http-probe", "/healthz", "--kernel-path"), 0, "deployed deployed")
	m.assertServing("v1", "v1")
	m.assertKernelRoute()

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
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(m.nginx.ErrorLog())
			t.Logf("nginx error log:\n%s", lastLines(string(b), 40))
		}
	}()

	// The kernel carries nginx's connections on both hosts: each DNAT's
	// counter grows under the load (its first packets only, so one per
	// connection nginx opened).
	before := m.dnatPackets()
	time.Sleep(3 * time.Second)
	after := m.dnatPackets()
	for i, h := range m.hosts {
		if after[i] <= before[i] {
			t.Fatalf("host %s: the kernel path's DNAT counted %d connections, then %d after 3 s of load: nginx's connections do not take it", h.Name, before[i], after[i])
		}
		t.Logf("host %s: %d connections through the kernel path in 3 s", h.Name, after[i]-before[i])
	}

	// Later rollouts keep the kernel path (recorded) and move it to each
	// new container. Before the first, the test holds one idle keep-alive
	// connection of its own through each host's kernel path, as a
	// WebSocket would: each host's drain must count it in the old
	// container's own table (read by the helper there, over ssh for host
	// 2), wait for it until --drain (3 s here), and report it cut by the
	// stop, which then closes it. A drain that counted none stopped the
	// old container at once under such connections, and under nginx's
	// kept ones: one POST failed so in CI. --drain goes back to 30 s for
	// the next rollouts (it is recorded), whose drains cut nothing: nginx
	// closes its kept connections within a second.
	held := make([]net.Conn, len(m.hosts))
	for i, h := range m.hosts {
		held[i] = holdConn(t, fmt.Sprintf("%s:%d", h.Addr, m.relayPort))
	}
	var took []time.Duration
	for i, v := range []string{"v2", "v1", "v2", "v1"} {
		args := []string{"--image", m.image(v)}
		switch i {
		case 0:
			args = append(args, "--drain", "3s")
		case 1:
			args = append(args, "--drain", "30s")
		}
		r := m.deploy(args...)
		res := m.expect(r, 0, "deployed deployed")
		took = append(took, r.took)
		for _, h := range res.Hosts {
			d := h.Deploy
			if d == nil || d.Drain == nil || !d.Drain.Counted || d.Drain.KernelUncounted {
				t.Fatalf("rollout %d: host %s's drain did not count the kernel path's connections: %+v", i+1, h.Host, d)
			}
			if i == 0 && (d.Drain.KernelWaited < 1 || d.Drain.Cut < 1) {
				t.Fatalf("rollout 1: host %s's drain %+v: want the held connection waited for (kernel_waited >= 1) and cut at --drain 3s", h.Host, *d.Drain)
			}
			if i > 0 && d.Drain.Cut != 0 {
				t.Fatalf("rollout %d: host %s's drain cut %d connections", i+1, h.Host, d.Drain.Cut)
			}
			t.Logf("rollout %d: host %s drained in %s: waited for %d (%d on the kernel path), cut %d", i+1, h.Host, d.Drain.Duration.Round(10*time.Millisecond), d.Drain.Waited, d.Drain.KernelWaited, d.Drain.Cut)
		}
		if i == 0 {
			for j, c := range held {
				assertClosed(t, m.hosts[j].Name, c)
			}
		}
		m.assertServing(v, v)
		m.assertKernelRoute()
		t.Logf("rollout %d to %s with the kernel path: %s", i+1, v, r.took.Round(100*time.Millisecond))
	}
	// As after a reboot of both hosts: their DNATs gone, the relays
	// carry the load (which must not fail), and baton status (the boot
	// unit runs it) puts the routes back.
	// The DNATs go first, and the SNATs and ACCEPTs once the connections
	// the kernel carried have ended (nginx keeps them at most 1 s): a
	// real reboot takes those connections with it, which a flush of the
	// ACCEPT under them would only imitate by cutting them.
	flush := func(table, chain string) {
		for _, h := range m.hosts {
			if out, err := exec.Command("ip", "netns", "exec", h.Name, "iptables", "-w", "5", "-t", table, "-F", chain).CombinedOutput(); err != nil {
				t.Fatalf("host %s: flushing %s: %v: %s", h.Name, chain, err, out)
			}
		}
	}
	flush("nat", "BATON-KERNELPATH-PRE")
	time.Sleep(2 * time.Second)
	flush("nat", "BATON-KERNELPATH-SNAT")
	flush("filter", "BATON-KERNELPATH-FWD")
	time.Sleep(time.Second)
	st := m.run("status", m.name, "--hosts", m.hostsFile)
	if st.code != 0 || strings.Count(st.stdout, "kernel path -> ") != 2 {
		t.Fatalf("status across hosts: exit %d, want 0 with the kernel path of both hosts\n%s\n%s", st.code, st.stdout, st.stderr)
	}
	m.assertKernelRoute()

	// Turned off: the relay carries again, and nothing of baton's is left
	// in either host's firewall, the helper container gone too.
	m.expect(m.deploy("--kernel-path=false"), 0, "up-to-date up-to-date") // nothing on the containers changes
	m.assertServing("v1", "v1")
	for _, h := range m.hosts {
		if out := iptablesSave(t, h); strings.Contains(out, "BATON") || strings.Contains(out, "baton") {
			t.Fatalf("host %s: baton's rules left after --kernel-path=false:\n%s", h.Name, out)
		}
		if out, err := exec.Command("docker", "-H", h.Socket, "ps", "-aq", "--filter", "name=^baton-kernelpath$").Output(); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("host %s: helper container left after the last kernel path went: %q %v", h.Name, out, err)
		}
	}
	time.Sleep(time.Second) // load through the relays again
	stopLoad()
	for _, h := range m.hosts {
		m.assertSingle(h)
	}
	t.Logf("rollouts with the kernel path took %v; whole test %s", roundAll(took), time.Since(start).Round(100*time.Millisecond))
}

// iptablesSave is host h's whole firewall.
func iptablesSave(t *testing.T, h *testenv.EngineHost) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.Name, "iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save in %s: %v: %s", h.Name, err, out)
	}
	return string(out)
}

var dnatRE = regexp.MustCompile(`-d (\S+)/32 -p tcp -m tcp --dport (\d+) .*--comment "?baton:([^" ]+)"? -j DNAT --to-destination (\S+)`)

// assertKernelRoute checks that each host's firewall sends new connections
// for its relay's address to the container serving there, by its address
// on the service's kernel network, gives them that network's gateway as
// their source, and lets exactly them through DOCKER-USER; the helper did
// it there. (assertServing's GETs, made straight to each host's relay
// address without nginx, then take that path.)
func (m *multiHost) assertKernelRoute() {
	m.t.Helper()
	for _, h := range m.hosts {
		c, err := h.Client.ContainerInspect(m.t.Context(), m.name)
		if err != nil {
			m.t.Fatal(err)
		}
		want, gw := "", ""
		for name, ep := range c.NetworkSettings.Networks {
			if strings.HasPrefix(name, "baton-kp-") {
				want = ep.IPAddress + ":8080"
				// An internal network gives its containers no gateway;
				// the network's own is the bridge's address.
				nw, err := h.Client.NetworkInspect(m.t.Context(), name, network.InspectOptions{})
				if err != nil || len(nw.IPAM.Config) == 0 {
					m.t.Fatalf("host %s: network %s: %v", h.Name, name, err)
				}
				gw = nw.IPAM.Config[0].Gateway
			}
		}
		save := iptablesSave(m.t, h)
		orig := fmt.Sprintf(`--ctorigdst %s(/32)? --ctorigdstport %d `, regexp.QuoteMeta(h.Addr), m.relayPort)
		snat := regexp.MustCompile(`-A BATON-KERNELPATH-SNAT -o \S+ -p tcp -m conntrack --ctstate DNAT ` + orig + `.* -j SNAT --to-source ` + regexp.QuoteMeta(gw) + `\n`)
		accept := regexp.MustCompile(`-A BATON-KERNELPATH-FWD -p tcp -m conntrack --ctstate DNAT ` + orig + `.* -j ACCEPT\n`)
		if gw == "" || len(snat.FindAllString(save, -1)) != 1 || len(accept.FindAllString(save, -1)) != 1 ||
			!strings.Contains(save, "-A DOCKER-USER -j BATON-KERNELPATH-FWD") && !strings.Contains(save, "-A DOCKER-USER -m comment --comment baton-jump -j BATON-KERNELPATH-FWD") {
			m.t.Fatalf("host %s: want one SNAT to %q and one ACCEPT for %s:%d, jumped to from DOCKER-USER:\n%s", h.Name, gw, h.Addr, m.relayPort, save)
		}
		var got []string
		for _, line := range strings.Split(save, "\n") {
			if mm := dnatRE.FindStringSubmatch(line); mm != nil && strings.Contains(line, "BATON-KERNELPATH-PRE") {
				if mm[1] != h.Addr || mm[2] != strconv.Itoa(m.relayPort) {
					m.t.Fatalf("host %s: DNAT for %s:%s, want the relay's %s:%d: %s", h.Name, mm[1], mm[2], h.Addr, m.relayPort, line)
				}
				got = append(got, mm[4])
			}
		}
		if want == "" || len(got) != 1 || got[0] != want {
			m.t.Fatalf("host %s: kernel path DNATs %v, want one to the serving container's kernel network address %q", h.Name, got, want)
		}
	}
}

// dnatPackets is each host's count of connections its kernel path's DNAT
// has carried.
func (m *multiHost) dnatPackets() []uint64 {
	m.t.Helper()
	var out []uint64
	for _, h := range m.hosts {
		b, err := exec.Command("ip", "netns", "exec", h.Name, "iptables", "-w", "5", "-t", "nat", "-L", "BATON-KERNELPATH-PRE", "-n", "-v", "-x").CombinedOutput()
		if err != nil {
			m.t.Fatalf("host %s: %v: %s", h.Name, err, b)
		}
		var n uint64
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, "DNAT") {
				v, _ := strconv.ParseUint(f[0], 10, 64)
				n += v
			}
		}
		out = append(out, n)
	}
	return out
}

var rigRuleRE = regexp.MustCompile(`(?m)^-A (DOCKER-USER -[io] \S+ -j ACCEPT|POSTROUTING -s \S+ ! -o \S+ -j MASQUERADE)$`)

// unmask deletes the rig's rules that let the controller's traffic into
// host h's container networks.
func unmask(t *testing.T, h *testenv.EngineHost) {
	t.Helper()
	save := iptablesSave(t, h)
	n := 0
	for _, rule := range rigRuleRE.FindAllString(save, -1) {
		if strings.HasPrefix(rule, "-A POSTROUTING") && !strings.Contains(rule, h.LocalAddr) {
			continue
		}
		args := []string{"netns", "exec", h.Name, "iptables", "-w", "5"}
		if strings.HasPrefix(rule, "-A POSTROUTING") {
			args = append(args, "-t", "nat")
		}
		args = append(args, append([]string{"-D"}, strings.Fields(strings.TrimPrefix(rule, "-A "))...)...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("host %s: %v: %s", h.Name, err, out)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("host %s: %d of the rig's 3 rules found to delete:\n%s", h.Name, n, save)
	}
}

// holdConn opens a connection to addr, makes one keep-alive request on it
// and returns it open and idle.
func holdConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("holding a connection to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(c); err != nil {
		t.Fatalf("request on the held connection to %s: %v", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatalf("response on the held connection to %s: %v", addr, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("held connection to %s: status %d, close %v; want 200 kept alive", addr, resp.StatusCode, resp.Close)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// assertClosed checks that the server has closed c (the old container's
// stop): a read ends at once.
func assertClosed(t *testing.T, host string, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("host %s: the held connection is still open after the rollout (%v): the old container was not stopped under it, or it went elsewhere", host, err)
	}
}
