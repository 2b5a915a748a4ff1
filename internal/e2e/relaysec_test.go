package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// TestRelayContainerHardened deploys through the relay and checks what the
// relay container was given, in its configuration and in the running
// process: no capabilities, no way to gain privileges, a read-only root, a
// user that is not root, and memory and task limits. The relay still
// serves (positive control).
func TestRelayContainerHardened(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, name, e.net) + ":8080"}})
	e.mustDeploy("--image", v2, "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", name)
	assertServes(t, ng.URL()+"/", "v2")

	rc := e.inspect(traffic.RelayName(name))
	h := rc.HostConfig
	switch {
	case len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL":
		t.Errorf("relay cap-drop %v, want [ALL]", h.CapDrop)
	case len(h.CapAdd) != 0:
		t.Errorf("relay cap-add %v, want none", h.CapAdd)
	case !contains(h.SecurityOpt, "no-new-privileges:true"):
		t.Errorf("relay security options %v, want no-new-privileges", h.SecurityOpt)
	case !h.ReadonlyRootfs:
		t.Error("relay root filesystem is writable")
	case h.Memory <= 0 || h.Memory > 256<<20 || h.MemorySwap != h.Memory:
		t.Errorf("relay memory limit %d (swap %d), want a limit of at most 256 MiB and no swap", h.Memory, h.MemorySwap)
	case h.PidsLimit == nil || *h.PidsLimit <= 0 || *h.PidsLimit > 1024:
		t.Errorf("relay pids limit %v, want a limit", h.PidsLimit)
	case h.Privileged:
		t.Error("relay is privileged")
	case rc.Config.User == "" || strings.HasPrefix(rc.Config.User, "0") || rc.Config.User == "root":
		t.Errorf("relay user %q, want a non-root user", rc.Config.User)
	}

	// What the kernel says about the running relay.
	st := procStatus(t, rc.State.Pid)
	for key, want := range map[string]string{"Uid": "65534", "Gid": "65534", "CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1"} {
		got := strings.Fields(st[key])
		if len(got) == 0 || got[0] != want {
			t.Errorf("relay process %s: %q, want %s", key, st[key], want)
		}
	}
	// The root is read-only: the relay's user could not write / anyway, but
	// the mount must say ro, and its state volume must be writable (it
	// saved the target).
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", rc.State.Pid))
	if err != nil {
		t.Fatal(err)
	}
	root := ""
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[1] == "/" {
			root = f[3]
		}
	}
	if !strings.HasPrefix(root, "ro,") && root != "ro" {
		t.Errorf("relay root mount options %q, want ro", root)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/state/relay.json", rc.State.Pid)); err != nil {
		t.Errorf("relay state file: %v; the relay could not save its target", err)
	}
	// For an nginx on the host the relay is in the host's network namespace
	// (no docker-proxy in the path), listening on loopback only: baton on
	// the host reaches its control port, the app container reaches neither
	// that nor the data port through the host's address on its network.
	if !h.NetworkMode.IsHost() {
		t.Errorf("relay network mode %q, want host", h.NetworkMode)
	}
	listen, ctl := rc.Config.Labels[traffic.LabelRelayListen], rc.Config.Labels[traffic.LabelRelayControl]
	if !strings.HasPrefix(listen, "127.0.0.1:") || !strings.HasPrefix(ctl, "127.0.0.1:") || !strings.Contains(readFile(t, ng.UpstreamFile()), "server "+listen) {
		t.Fatalf("relay listens on %q, control on %q; upstream file %q", listen, ctl, readFile(t, ng.UpstreamFile()))
	}
	if c, err := net.DialTimeout("tcp", ctl, 2*time.Second); err != nil {
		t.Errorf("the relay's control port %s is not reachable from the host: %v", ctl, err)
	} else {
		_ = c.Close()
	}
	app := e.inspect(name)
	svcNet, err := e.cli.NetworkInspect(t.Context(), dockerctl.ServiceNetwork(name), network.InspectOptions{})
	if err != nil || len(svcNet.IPAM.Config) == 0 || svcNet.IPAM.Config[0].Gateway == "" {
		t.Fatalf("service network of %s: no gateway address (%v)", name, err)
	}
	gw := svcNet.IPAM.Config[0].Gateway
	appIP := app.NetworkSettings.Networks[dockerctl.ServiceNetwork(name)].IPAddress
	if err := dialFromContainer(t, app.State.Pid, net.JoinHostPort(appIP, "8080"), 2*time.Second); err != nil {
		t.Fatalf("positive control: the app container cannot dial its own port: %v", err)
	}
	for _, addr := range []string{ctl, listen} {
		_, port, _ := net.SplitHostPort(addr)
		if err := dialFromContainer(t, app.State.Pid, net.JoinHostPort(gw, port), 2*time.Second); err == nil {
			t.Errorf("the app container reached the relay's %s through the host's address %s", addr, gw)
		}
	}
	// Positive control: a deploy still switches through the hardened relay.
	e.mustDeploy("--image", v1, name)
	assertServes(t, ng.URL()+"/", "v1")
}

// procStatus reads /proc/<pid>/status into key -> value.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestRelayControlFlood floods a real relay container's control port from
// a managed app container (hundreds of connections, each sending a large
// line without a newline) while load runs through nginx and the relay and a
// deploy switches the relay: the relay's memory stays bounded, no request is
// lost, and the deploy's switch gets through. nginx runs in a container, so
// the relay is on the service's network with the app, where its control
// port can be reached from a container at all (a relay for an nginx on the
// host listens on the host's loopback; TestRelayContainerHardened checks a
// container cannot reach that).
func TestRelayControlFlood(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: e.net, UpstreamFile: "web.conf", InitialServers: []string{name + ":8080"}})
	e.mustDeploy("--image", v2, "--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz", name)

	svcNet := dockerctl.ServiceNetwork(name)
	rc := e.inspect(traffic.RelayName(name))
	ctlAddr := net.JoinHostPort(rc.NetworkSettings.Networks[svcNet].IPAddress, "9091")
	app := e.inspect(name)
	before := relayMemory(t, e, rc.ID)

	// The flood, from the serving app container's network namespace.
	const conns = 300
	junk := []byte(`{"op":"status","name":"` + strings.Repeat("x", 1<<20))
	stop := make(chan struct{})
	var opened, wrote atomic.Int64
	flooding := make(chan struct{})
	floodErr := make(chan error, 1)
	go func() {
		floodErr <- runInNetns(app.State.Pid, func() {
			slots := make(chan struct{}, conns)
			var wg sync.WaitGroup
			defer wg.Wait()
			once := sync.Once{}
			for {
				select {
				case <-stop:
					return
				case slots <- struct{}{}:
				}
				c, err := net.DialTimeout("tcp", ctlAddr, time.Second)
				if err != nil {
					<-slots
					continue
				}
				if opened.Add(1) == conns {
					once.Do(func() { close(flooding) })
				}
				wg.Go(func() {
					defer func() { <-slots }()
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(20 * time.Second))
					n, _ := c.Write(junk)
					wrote.Add(int64(n))
					// Hold it until the relay closes it or the flood ends.
					buf := make([]byte, 512)
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := c.Read(buf); err != nil {
							return
						}
					}
				})
			}
		})
	}()
	select {
	case err := <-floodErr:
		t.Fatalf("the flood ended early: %v", err)
	case <-flooding:
	case <-time.After(30 * time.Second):
		close(stop)
		t.Fatalf("the flood opened only %d connections in 30s", opened.Load())
	}

	var peak atomic.Int64
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		for {
			if m := relayMemory(t, e, rc.ID); m > peak.Load() {
				peak.Store(m)
			}
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	load := startLoad(t, ng.URL()+"/", 2*time.Minute)
	time.Sleep(2 * time.Second)
	e.mustDeploy("--image", v1, name) // the switch is a control call during the flood
	time.Sleep(2 * time.Second)
	res := load.Stop()
	close(stop)
	<-sampling

	t.Logf("flood: %d connections opened, %d MiB sent; relay memory %d MiB before, peak %d MiB", opened.Load(), wrote.Load()>>20, before>>20, peak.Load()>>20)
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: the deploy did not move traffic", res.Versions())
	}
	if opened.Load() < conns || wrote.Load() < conns<<10 {
		t.Fatalf("the flood did not run: %d connections, %d bytes", opened.Load(), wrote.Load())
	}
	if peak.Load() == 0 || peak.Load() > 64<<20 {
		t.Fatalf("relay memory peaked at %d MiB during the flood, want under 64 MiB", peak.Load()>>20)
	}
	if c := e.inspect(traffic.RelayName(name)); c.ID != rc.ID || !c.State.Running || c.RestartCount != 0 || c.State.OOMKilled {
		t.Fatalf("relay was replaced, restarted or killed during the flood: %+v", c.State)
	}
	e.assertSingle(name, v1)
	assertServes(t, ng.URL()+"/", "v1")
}

// relayMemory is a container's memory use as its cgroup counts it (what
// docker stats shows: usage less the inactive file cache).
func relayMemory(t *testing.T, e *env, id string) int64 {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
	defer cancel()
	resp, err := e.cli.ContainerStatsOneShot(ctx, id)
	if err != nil {
		t.Errorf("stats of %s: %v", id, err)
		return 0
	}
	defer resp.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Errorf("stats of %s: %v", id, err)
		return 0
	}
	used := int64(st.MemoryStats.Usage)
	for _, k := range []string{"total_inactive_file", "inactive_file"} {
		if v, ok := st.MemoryStats.Stats[k]; ok && int64(v) < used {
			return used - int64(v)
		}
	}
	return used
}

// TestServicesIsolated deploys two services with baton, each on a network
// of its own as two compose projects would be, each behind its own nginx
// container through its relay: neither service's containers nor its relay
// can open a connection to the other's, while each is served (positive
// control) and reaches its own relay.
func TestServicesIsolated(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	type svc struct {
		name string
		ng   *testenv.Nginx
		app  container.InspectResponse
		rel  container.InspectResponse
	}
	var svcs []*svc
	for i := range 2 {
		s := &svc{name: testenv.UniqueName(fmt.Sprintf("iso%d-", i))}
		netName := e.net
		if i == 1 { // the second project's own network
			netName = testenv.Network(t, e.cli, "", false)
		}
		if _, err := e.cli.ImageInspect(t.Context(), v1); isNotFound(err) {
			e.pull(v1, "")
		}
		id := testenv.RunDemo(t, e.cli, testenv.RunOpts{Name: s.name, Image: v1, Network: netName})
		testenv.WaitHealthy(t, e.cli, id, 60*time.Second)
		e.cleanupService(s.name)
		// nginx in a container of the project (host nginx instances cannot
		// be told apart by their workers).
		s.ng = testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: netName, UpstreamFile: "web.conf", InitialServers: []string{s.name + ":8080"}})
		e.mustDeploy("--image", v2, "--nginx-upstream", s.ng.UpstreamFile(), "--nginx-container", s.ng.Container(), "--http-probe", "/healthz", s.name)
		svcs = append(svcs, s)
	}
	for _, s := range svcs {
		assertServes(t, s.ng.URL()+"/", "v2")
		s.app = e.inspect(s.name)
		s.rel = e.inspect(traffic.RelayName(s.name))
		for n := range s.app.NetworkSettings.Networks {
			if n == dockerctl.LegacyNetwork {
				t.Fatalf("%s is on the shared network %s", s.name, n)
			}
		}
	}
	addrOn := func(c container.InspectResponse, owner, port string) string {
		ep := c.NetworkSettings.Networks[dockerctl.ServiceNetwork(owner)]
		if ep == nil || ep.IPAddress == "" {
			t.Fatalf("%s is not on %s: %v", c.Name, dockerctl.ServiceNetwork(owner), c.NetworkSettings.Networks)
		}
		return net.JoinHostPort(ep.IPAddress, port)
	}
	for i, s := range svcs {
		other := svcs[1-i]
		// Positive controls: a service reaches its own relay, and its relay
		// its app, on their network.
		if err := dialFromContainer(t, s.app.State.Pid, addrOn(s.rel, s.name, "8080"), 2*time.Second); err != nil {
			t.Fatalf("%s cannot reach its own relay: %v", s.name, err)
		}
		if err := dialFromContainer(t, s.rel.State.Pid, addrOn(s.app, s.name, "8080"), 2*time.Second); err != nil {
			t.Fatalf("the relay of %s cannot reach it: %v", s.name, err)
		}
		// Every address the other service's app and relay have, on every
		// network they are on, on the app's port and the relay's ports.
		targets := map[string]string{}
		for what, c := range map[string]container.InspectResponse{"app": other.app, "relay": other.rel} {
			for netName, ep := range c.NetworkSettings.Networks {
				if ep == nil || ep.IPAddress == "" {
					continue
				}
				for _, port := range []string{"8080", "9091"} {
					targets[net.JoinHostPort(ep.IPAddress, port)] = fmt.Sprintf("%s of %s on %s", what, other.name, netName)
				}
			}
		}
		if len(targets) < 4 {
			t.Fatalf("the other service's containers have only %d addresses: %v", len(targets), targets)
		}
		for target, what := range targets {
			for from, pid := range map[string]int{"app": s.app.State.Pid, "relay": s.rel.State.Pid} {
				if err := dialFromContainer(t, pid, target, time.Second); err == nil {
					t.Errorf("the %s of %s reached the %s at %s", from, s.name, what, target)
				}
			}
		}
	}
}
