package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// The data paths the data-path benchmark measures, in the order it runs and
// prints them. Each is a request's way from the load (on the host) through
// nginx to the demo app; nothing is deployed while it is measured.
const (
	// PathDirect: nginx on the host -> the app container's address. The
	// floor every other path is compared with.
	PathDirect = "direct"
	// PathPublished: nginx on the host -> the app's published 127.0.0.1
	// port (docker-proxy) -> the app.
	PathPublished = "published"
	// PathRelayHost: nginx on the host -> baton's relay, listening on
	// 127.0.0.1 in the host's network namespace -> the app's address, as
	// baton sets it up for an nginx on the host.
	PathRelayHost = "relay-host"
	// PathKernel: nginx on the host -> the relay's 127.0.0.1 address, but
	// carried by the kernel (baton --kernel-path's DNAT and SNAT, as it
	// leaves them between deploys) -> the app's address.
	PathKernel = "kernel-path"
	// PathDirectKeepalive and PathRelayHostKeepalive: the same two paths
	// with nginx keeping upstream connections (KeepaliveUpstream), so a
	// connection carries many requests and the relay's per-connection cost
	// is paid once a second, not once a request.
	PathDirectKeepalive    = "direct-keepalive"
	PathRelayHostKeepalive = "relay-host-keepalive"
	// PathContainerDirect: nginx in a container -> the app by its name on
	// their network. The load reaches this nginx by its container address.
	PathContainerDirect = "container-direct"
	// PathRelayContainer: nginx in a container -> baton's relay on the
	// service's network -> the app, as baton sets it up for an nginx
	// container. The load reaches nginx by its container address.
	PathRelayContainer = "relay-container"
	// PathKernelContainer: nginx in a container -> the relay's address on
	// the service's network, but carried by the kernel (baton
	// --kernel-path's DNAT in nginx's own network namespace, as it leaves
	// it between deploys) -> the app's address there.
	PathKernelContainer = "kernel-path-container"
	// PathNginxReload: nginx on the host -> the app container's address as
	// baton's nginx-reload mode (--relay=false) writes it.
	PathNginxReload = "nginx-reload"
)

// DataPaths returns every data path, in the order they are measured.
func DataPaths() []string {
	return []string{PathDirect, PathPublished, PathRelayHost, PathKernel, PathDirectKeepalive, PathRelayHostKeepalive, PathContainerDirect, PathRelayContainer, PathKernelContainer, PathNginxReload}
}

// DefaultDataPathDuration is how long each path is loaded by default.
const DefaultDataPathDuration = 10 * time.Second

// dataPathWarmup is load sent before each measurement and not counted:
// nginx's workers, the relay and the app's first connections.
const dataPathWarmup = time.Second

// DataPathConfig says what the data-path benchmark measures.
type DataPathConfig struct {
	Clients  int           // closed-loop keep-alive clients (default DefaultClients)
	Duration time.Duration // measured load per path and round (default DefaultDataPathDuration)
	// Rounds is how often every path is measured, in turn, all set up at
	// once: a machine whose load changes during the run then weighs on
	// every path alike (default DefaultDataPathRounds).
	Rounds int
	Out    io.Writer // progress lines (default: none)
}

// DefaultDataPathRounds is how many rounds run by default.
const DefaultDataPathRounds = 2

// DataPathReport is what a data-path run measured, one entry per path.
type DataPathReport struct {
	Started  time.Time     `json:"started"`
	Clients  int           `json:"clients"`
	Duration time.Duration `json:"duration_ns"` // per path and round
	Rounds   int           `json:"rounds"`
	LoadAvg  string        `json:"loadavg,omitempty"` // /proc/loadavg at the start
	Paths    []*PathResult `json:"paths"`
}

// PathResult is one path under saturating load, summed over the rounds.
type PathResult struct {
	Path     string        `json:"path"`
	Route    string        `json:"route"` // what the request crosses, for people
	Error    string        `json:"error,omitempty"`
	Rounds   int           `json:"rounds"` // measured
	Requests int           `json:"requests"`
	Failed   int           `json:"failed"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Latency  Latency       `json:"latency"`
	// RelayCPU is the relay container's CPU time over the measured load
	// (its cgroup's usage); zero on paths without a relay.
	RelayCPU time.Duration `json:"relay_cpu_ns,omitempty"`
	// ProxyCPU is the CPU time of the docker-proxy processes on the path.
	ProxyCPU time.Duration `json:"docker_proxy_cpu_ns,omitempty"`
	// AppCPU is the app container's CPU time: the work of a Go HTTP server
	// that accepts one connection per request, to compare the relay with.
	AppCPU time.Duration `json:"app_cpu_ns"`
	// KernelConns is how many connections the kernel path's DNAT carried
	// over the measured load (PathKernel only).
	KernelConns uint64 `json:"kernel_connections,omitempty"`

	durations []time.Duration
}

// RPS is requests per second over the measured load.
func (p *PathResult) RPS() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Requests) / p.Elapsed.Seconds()
}

// perThousand is CPU seconds per 1,000 requests.
func (p *PathResult) perThousand(cpu time.Duration) float64 {
	if p.Requests == 0 {
		return 0
	}
	return cpu.Seconds() * 1000 / float64(p.Requests)
}

var routes = map[string]string{
	PathDirect:             "host nginx -> app address",
	PathPublished:          "host nginx -> 127.0.0.1 port (docker-proxy) -> app",
	PathRelayHost:          "host nginx -> relay on the host's 127.0.0.1 -> app address",
	PathKernel:             "host nginx -> relay's 127.0.0.1 address, baton --kernel-path's DNAT + SNAT in the kernel -> app address",
	PathDirectKeepalive:    "host nginx (upstream keepalive, keepalive_time 1s) -> app address",
	PathRelayHostKeepalive: "host nginx (upstream keepalive, keepalive_time 1s) -> relay on 127.0.0.1 -> app address",
	PathContainerDirect:    "nginx container -> app by name",
	PathRelayContainer:     "nginx container -> relay on the service network -> app",
	PathKernelContainer:    "nginx container -> relay's address, baton --kernel-path's DNAT in nginx's namespace -> app",
	PathNginxReload:        "host nginx -> app address (baton --relay=false)",
}

// RunDataPath measures every data path in one run. It sets up four apps
// (one per way baton or the user connects nginx to it), each with its
// nginx, then loads every path in turn, Rounds times, with nothing else of
// the benchmark running. A path that cannot be set up or measured keeps its
// error in the report and the others still run.
func RunDataPath(ctx context.Context, cfg DataPathConfig) (*DataPathReport, error) {
	cfg.defaults()
	rep, byPath := newDataPathReport(cfg, DataPaths())
	ctx, cancel := context.WithTimeout(ctx, cfg.budget(len(rep.Paths)))
	defer cancel()
	env := testenv.NewEnv(ctx, "bench-datapath", cfg.Out)
	var targets []*pathTarget
	for _, s := range setups {
		err := env.Run(func(t testenv.TB) {
			t.Logf("data path: setting up %s", strings.Join(s.paths, ", "))
			targets = append(targets, s.run(t, testenv.Docker(t), byPath)...)
		})
		if err != nil {
			for _, name := range s.paths {
				if p := byPath[name]; p.Error == "" {
					p.Error = "set-up failed: " + err.Error()
				}
			}
		}
	}
	for round := 1; round <= cfg.Rounds; round++ {
		for _, tg := range targets {
			if tg.p.Error != "" {
				continue
			}
			_ = env.Run(func(t testenv.TB) {
				t.Logf("data path: round %d/%d: %s", round, cfg.Rounds, tg.p.Path)
				tg.measure(t, cfg)
			})
		}
	}
	for _, p := range rep.Paths {
		p.Latency = latency(loadgen.PercentilesOf(p.durations))
	}
	// Close returns every failure of the Env's life, the set-ups' and
	// measurements' included.
	return rep, env.Close()
}

// defaults fills in what cfg leaves unset.
func (cfg *DataPathConfig) defaults() {
	if cfg.Clients <= 0 {
		cfg.Clients = DefaultClients
	}
	if cfg.Duration <= 0 {
		cfg.Duration = DefaultDataPathDuration
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = DefaultDataPathRounds
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
}

// budget bounds a run of n paths: their set-up, then every round of each.
func (cfg DataPathConfig) budget(n int) time.Duration {
	per := cfg.Duration + dataPathWarmup + 10*time.Second
	return setupBudget + time.Duration(cfg.Rounds*n)*per
}

// newDataPathReport is an empty report of paths, and its paths by name.
func newDataPathReport(cfg DataPathConfig, paths []string) (*DataPathReport, map[string]*PathResult) {
	rep := &DataPathReport{Started: time.Now(), Clients: cfg.Clients, Duration: cfg.Duration, Rounds: cfg.Rounds, LoadAvg: loadAvg()}
	byPath := map[string]*PathResult{}
	for _, p := range paths {
		byPath[p] = &PathResult{Path: p, Route: routes[p]}
		rep.Paths = append(rep.Paths, byPath[p])
	}
	return rep, byPath
}

// setup builds what some paths need and returns them ready to load.
type setup struct {
	paths []string
	run   func(t testenv.TB, cli *client.Client, p map[string]*PathResult) []*pathTarget
}

var setups = []setup{
	{[]string{PathDirect, PathPublished}, plainSetup},
	{[]string{PathRelayHost, PathRelayHostKeepalive, PathDirectKeepalive}, relayHostSetup},
	{[]string{PathKernel}, kernelSetup},
	{[]string{PathContainerDirect, PathRelayContainer}, containerSetup},
	{[]string{PathKernelContainer}, containerKernelSetup},
	{[]string{PathNginxReload}, reloadSetup},
}

// plainSetup: an app publishing a port, an nginx on the host for its
// address and one for its published port; no baton.
func plainSetup(t testenv.TB, cli *client.Client, p map[string]*PathResult) []*pathTarget {
	app := StartApp(t, cli, AppOpts{Versions: []string{"A"}, Publish: true})
	ip := testenv.ContainerIP(t, cli, app.ID, app.Network)
	return []*pathTarget{
		{p: p[PathDirect], cli: cli, url: hostNginx(t, net.JoinHostPort(ip, "8080")).URL(), app: app.Name},
		{p: p[PathPublished], cli: cli, url: hostNginx(t, app.HostAddr()).URL(), app: app.Name, proxyPorts: []int{app.HostPort}},
	}
}

// relayHostSetup: an app publishing a port, an nginx on the host, and the
// relay baton puts between them.
func relayHostSetup(t testenv.TB, cli *client.Client, p map[string]*PathResult) []*pathTarget {
	app := StartApp(t, cli, AppOpts{Versions: []string{"A"}, Publish: true})
	ng := hostNginx(t, app.HostAddr())
	SetUpRelay(t, NewBaton(t), app, ng, []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz"}, nil)
	relay, listen := relayID(t, cli, app.Name)
	if listen == "" {
		t.Fatalf("relay of %s: no listen address label", app.Name)
	}
	ka := testenv.HostNginx(t, KeepaliveNginxOpts(filepath.Join(t.TempDir(), "app.conf"), listen))
	// By name: the set-up deploy replaced the container app.ID names.
	ip := testenv.ContainerIP(t, cli, app.Name, app.Network)
	direct := testenv.HostNginx(t, KeepaliveNginxOpts(filepath.Join(t.TempDir(), "app.conf"), net.JoinHostPort(ip, "8080")))
	return []*pathTarget{
		{p: p[PathRelayHost], cli: cli, url: ng.URL(), app: app.Name, relay: relay},
		{p: p[PathRelayHostKeepalive], cli: cli, url: ka.URL(), app: app.Name, relay: relay},
		{p: p[PathDirectKeepalive], cli: cli, url: direct.URL(), app: app.Name},
	}
}

// kernelSetup: the relay-host set-up with baton's --kernel-path, so
// nginx's connections pass the relay by in the kernel between deploys.
func kernelSetup(t testenv.TB, cli *client.Client, p map[string]*PathResult) []*pathTarget {
	app := StartApp(t, cli, AppOpts{Versions: []string{"A"}, Publish: true})
	ng := hostNginx(t, app.HostAddr())
	removeKernelPath(t, app.Name)
	tbl := kernelpath.NewTable(kernelpath.ExecRunner{})
	SetUpRelay(t, NewBaton(t), app, ng, []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", "--kernel-path"}, nil)
	target, err := tbl.Target(t.Context(), app.Name)
	if err != nil || target == "" {
		t.Fatalf("baton --kernel-path set no route for %s (%q, %v)", app.Name, target, err)
	}
	return []*pathTarget{{p: p[PathKernel], cli: cli, url: ng.URL(), app: app.Name, kernel: tbl, kernelService: app.Name}}
}

// KeepaliveNginxOpts is a host nginx with KeepaliveUpstream for server.
func KeepaliveNginxOpts(upstreamFile, server string) testenv.NginxOpts {
	return testenv.NginxOpts{UpstreamFile: upstreamFile, InitialServers: []string{server}, Upstream: testenv.KeepaliveUpstream, Location: testenv.KeepaliveLocation}
}

// containerSetup: an app and an nginx container on the app's network,
// nginx reaching the app by name; then a second app, served through the
// relay baton sets up for its nginx container. The load reaches each nginx
// by its address on the app's network, not through a published port.
func containerSetup(t testenv.TB, cli *client.Client, p map[string]*PathResult) []*pathTarget {
	nginxURL := func(ng *testenv.Nginx, network string) (string, []string) {
		ip := testenv.ContainerIP(t, cli, ng.Container(), network)
		return "http://" + net.JoinHostPort(ip, "80"), []string{ip}
	}
	app := StartApp(t, cli, AppOpts{Versions: []string{"A"}})
	ng := testenv.ContainerNginx(t, cli, testenv.NginxOpts{Network: app.Network, UpstreamFile: "app.conf", InitialServers: []string{app.Name + ":8080"}})
	url, allow := nginxURL(ng, app.Network)
	direct := &pathTarget{p: p[PathContainerDirect], cli: cli, url: url, allow: allow, app: app.Name}

	app = StartApp(t, cli, AppOpts{Versions: []string{"A"}})
	ng = testenv.ContainerNginx(t, cli, testenv.NginxOpts{Network: app.Network, UpstreamFile: "app.conf", InitialServers: []string{app.Name + ":8080"}})
	SetUpRelay(t, NewBaton(t), app, ng, []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz"}, nil)
	relay, _ := relayID(t, cli, app.Name)
	url, allow = nginxURL(ng, app.Network)
	return []*pathTarget{direct, {p: p[PathRelayContainer], cli: cli, url: url, allow: allow, app: app.Name, relay: relay}}
}

// containerKernelSetup: the relay set-up for an nginx container, with
// baton's --kernel-path, so nginx's connections pass the relay by in the
// kernel of nginx's own namespace between deploys.
func containerKernelSetup(t testenv.TB, cli *client.Client, p map[string]*PathResult) []*pathTarget {
	app := StartApp(t, cli, AppOpts{Versions: []string{"A"}})
	ng := testenv.ContainerNginx(t, cli, testenv.NginxOpts{Network: app.Network, UpstreamFile: "app.conf", InitialServers: []string{app.Name + ":8080"}})
	SetUpRelay(t, NewBaton(t), app, ng, []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz", "--kernel-path"}, nil)
	tbl := NginxKernelTable(t, cli, ng.Container())
	target, err := tbl.Target(t.Context(), app.Name)
	if err != nil || target == "" {
		t.Fatalf("baton --kernel-path set no route for %s in nginx container %s (%q, %v)", app.Name, ng.Container(), target, err)
	}
	ip := testenv.ContainerIP(t, cli, ng.Container(), app.Network)
	// No relay CPU counted: as for the host's kernel path, the relay is
	// not on the path between deploys.
	return []*pathTarget{{p: p[PathKernelContainer], cli: cli, url: "http://" + net.JoinHostPort(ip, "80"), allow: []string{ip}, app: app.Name, kernel: tbl, kernelService: app.Name}}
}

// NginxKernelTable is the kernel path's table in nginx container name's
// network namespace, held open until t ends.
func NginxKernelTable(t testenv.TB, cli *client.Client, name string) *kernelpath.Table {
	t.Helper()
	c, err := cli.ContainerInspect(t.Context(), name)
	if err != nil {
		t.Fatalf("nginx container %s: %v", name, err)
	}
	ns, err := kernelpath.OpenNamespace(c.State.Pid)
	if err != nil {
		t.Fatalf("nginx container %s: %v", name, err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	return kernelpath.NewTable(kernelpath.NamespaceRunner{NS: ns})
}

// reloadSetup: an app deployed once by baton with --relay=false, so nginx
// on the host names the container's address as that mode writes it.
func reloadSetup(t testenv.TB, cli *client.Client, p map[string]*PathResult) []*pathTarget {
	app := StartApp(t, cli, AppOpts{Versions: []string{"A"}})
	ip := testenv.ContainerIP(t, cli, app.ID, app.Network)
	ng := hostNginx(t, net.JoinHostPort(ip, "8080"))
	flags := []string{"--relay=false", "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz"}
	run, err := NewBaton(t).Deploy(t.Context(), append(append([]string{"--force", "--pull", "never"}, flags...), app.Name)...)
	if err == nil {
		err = run.Err()
	}
	if err != nil {
		t.Fatalf("deploying %s with --relay=false: %v", app.Name, err)
	}
	if run.Result == nil || run.Result.Traffic != "nginx" {
		t.Fatalf("deploying %s with --relay=false: baton did not report traffic: nginx (stdout %q)", app.Name, run.Stdout)
	}
	return []*pathTarget{{p: p[PathNginxReload], cli: cli, url: ng.URL(), app: app.Name}}
}

func hostNginx(t testenv.TB, server string) *testenv.Nginx {
	return testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: filepath.Join(t.TempDir(), "app.conf"), InitialServers: []string{server}})
}

// relayID returns the service's relay container's ID and the address it
// listens on in the host's namespace ("" for a relay on a network).
func relayID(t testenv.TB, cli *client.Client, service string) (id, listen string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	name := traffic.RelayName(service)
	info, err := cli.ContainerInspect(ctx, name)
	if err != nil {
		t.Fatalf("relay container %s: inspect: %v", name, err)
	}
	return info.ID, info.Config.Labels[traffic.LabelRelayListen]
}

// pathTarget is one path, set up and ready to load.
type pathTarget struct {
	p          *PathResult
	cli        *client.Client
	url        string   // nginx's, the load's target
	allow      []string // non-loopback hosts the load may target
	app        string   // the app container's name
	relay      string   // the relay container's ID; "" without a relay
	proxyPorts []int    // published host ports whose docker-proxy is on the path
	// kernel and kernelService count the kernel path's connections.
	kernel        kernelCounter
	kernelService string
}

// kernelCounter counts the connections a service's kernel path carried:
// a kernelpath.Table, or the tables of several hosts.
type kernelCounter interface {
	Connections(ctx context.Context, service string) (uint64, error)
}

func (tg *pathTarget) kernelConns(t testenv.TB) uint64 {
	if tg.kernel == nil {
		return 0
	}
	n, err := tg.kernel.Connections(t.Context(), tg.kernelService)
	if err != nil {
		t.Fatalf("path %s: %v", tg.p.Path, err)
	}
	return n
}

// measure loads the path for dataPathWarmup (not counted), then for
// Duration, and adds what it measured to the path's result. A failure is
// kept in the result and ends the measurement (t.Fatalf).
func (tg *pathTarget) measure(t testenv.TB, cfg DataPathConfig) {
	p := tg.p
	fail := func(format string, args ...any) {
		p.Error = fmt.Sprintf(format, args...)
		t.Fatalf("path %s: %s", p.Path, p.Error)
	}
	lc := loadgen.Config{URL: tg.url + "/", Clients: cfg.Clients, AllowHosts: tg.allow, Duration: dataPathWarmup}
	if _, err := loadgen.Run(t.Context(), lc); err != nil {
		fail("warm-up load: %v", err)
	}
	proxies, err := dockerProxies(tg.proxyPorts)
	if err != nil {
		fail("%v", err)
	}
	relayBefore, appBefore, proxyBefore, kernelBefore := tg.containerCPU(t, tg.relay), tg.containerCPU(t, tg.app), proxyCPU(proxies), tg.kernelConns(t)
	lc.Duration = cfg.Duration
	res, err := loadgen.Run(t.Context(), lc)
	if err != nil {
		fail("load: %v", err)
	}
	relayAfter, appAfter, proxyAfter, kernelAfter := tg.containerCPU(t, tg.relay), tg.containerCPU(t, tg.app), proxyCPU(proxies), tg.kernelConns(t)
	t.Logf("data path %-16s %6.0f req/s, %s", p.Path, float64(res.Total())/res.End.Sub(res.Start).Seconds(), res.Summary())
	if res.Reason != "duration" {
		fail("the load stopped early (%s)", res.Reason)
	}
	if res.Total() == 0 {
		fail("no request completed")
	}
	if res.Failed() > 0 {
		fail("%d of %d requests failed, e.g. %s", res.Failed(), res.Total(), FailureReasons(res, 1)[0].Reason)
	}
	p.Rounds++
	p.Requests += res.Total()
	p.Elapsed += res.End.Sub(res.Start)
	for _, s := range res.Samples() {
		p.durations = append(p.durations, s.Duration)
	}
	p.RelayCPU += relayAfter - relayBefore
	p.AppCPU += appAfter - appBefore
	p.ProxyCPU += proxyAfter - proxyBefore
	p.KernelConns += kernelAfter - kernelBefore
}

// containerCPU is a container's CPU usage so far, as its cgroup counts it
// (what docker stats shows); 0 for no container.
func (tg *pathTarget) containerCPU(t testenv.TB, id string) time.Duration {
	if id == "" {
		return 0
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := tg.cli.ContainerStatsOneShot(ctx, id)
	if err != nil {
		t.Fatalf("container %s: stats: %v", id, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var st container.StatsResponse
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("container %s: stats: %v", id, err)
	}
	return time.Duration(st.CPUStats.CPUUsage.TotalUsage)
}

// dockerProxies finds the docker-proxy processes that serve the given
// published host ports (one per port and address family Docker publishes).
func dockerProxies(ports []int) ([]int, error) {
	if len(ports) == 0 {
		return nil, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("docker-proxy: %w", err)
	}
	want := map[string]bool{}
	for _, p := range ports {
		want[strconv.Itoa(p)] = true
	}
	found := map[string]bool{}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "docker-proxy" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-host-port" && want[args[i+1]] {
				pids = append(pids, pid)
				found[args[i+1]] = true
			}
		}
	}
	if len(found) != len(want) {
		return nil, fmt.Errorf("docker-proxy: no process found for every published port %v (found %v)", ports, found)
	}
	return pids, nil
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times; 100 on
// every Linux architecture Docker runs on.
const clockTick = 10 * time.Millisecond

// proxyCPU sums user and system CPU time of the processes (0 for one gone).
func proxyCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state is field 3, utime 14, stime 15.
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		sum += time.Duration(ut+st) * clockTick
	}
	return sum
}

// loadAvg is the first three fields of /proc/loadavg: how busy the machine
// was, which the numbers depend on.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
