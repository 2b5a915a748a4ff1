package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// The data paths across hosts: nginx on this machine, the app on engines
// in network namespaces (other machines as far as the packets go), as a
// rollout (--hosts) sets them up.
const (
	// PathHostsPublished: nginx -> each host's address, on a port Docker
	// publishes there (its DNAT in that host's kernel) -> the app. What
	// reaching a container on another machine costs without baton: the
	// floor of these paths.
	PathHostsPublished = "hosts-published"
	// PathHostsRelay: nginx -> each host's relay on that host's address ->
	// the app.
	PathHostsRelay = "hosts-relay"
	// PathHostsKernel: nginx -> each host's relay address, baton
	// --kernel-path's DNAT + SNAT in that host's kernel -> the app.
	PathHostsKernel = "hosts-kernel-path"
)

// HostsDataPaths returns the data paths across hosts, in the order they are
// measured.
func HostsDataPaths() []string { return []string{PathHostsPublished, PathHostsRelay, PathHostsKernel} }

func init() {
	routes[PathHostsPublished] = "host nginx -> each host's address, a port Docker publishes there (its DNAT) -> app"
	routes[PathHostsRelay] = "host nginx -> each host's relay on its address -> app"
	routes[PathHostsKernel] = "host nginx -> each host's relay address, baton --kernel-path's DNAT + SNAT there -> app"
}

// HostsDataPathConfig says how RunHostsDataPath measures: on Hosts engines
// (each in its own network namespace, default 2), the rest as for
// RunDataPath.
type HostsDataPathConfig struct {
	Hosts int
	DataPathConfig
}

// RunHostsDataPath measures the data paths across hosts in one run: on
// cfg.Hosts engines it sets up the app three ways (published on each
// host's address; a rollout with the relay; a rollout with the relay and
// --kernel-path), each with its own nginx here, then loads every path in
// turn, cfg.Rounds times, as RunDataPath does.
func RunHostsDataPath(ctx context.Context, cfg HostsDataPathConfig) (*DataPathReport, error) {
	if cfg.Hosts <= 0 {
		cfg.Hosts = 2
	}
	cfg.defaults()
	rep, byPath := newDataPathReport(cfg.DataPathConfig, HostsDataPaths())
	ctx, cancel := context.WithTimeout(ctx, cfg.budget(len(rep.Paths)))
	defer cancel()
	env := testenv.NewEnv(ctx, "bench-hosts-datapath", cfg.Out)
	err := env.Run(func(t testenv.TB) {
		targets := hostsPathsSetup(t, cfg, byPath)
		for round := 1; round <= cfg.Rounds; round++ {
			for _, tg := range targets {
				t.Logf("data path across hosts: round %d/%d: %s", round, cfg.Rounds, tg.p.Path)
				tg.measure(t, cfg.DataPathConfig)
			}
		}
	})
	for _, p := range rep.Paths {
		if err != nil && p.Error == "" && p.Rounds < cfg.Rounds {
			p.Error = err.Error()
		}
		p.Latency = latency(loadgen.PercentilesOf(p.durations))
	}
	if cerr := env.Close(); err == nil {
		err = cerr
	}
	return rep, err
}

// hostsPathsSetup starts the engines and sets the three paths up.
func hostsPathsSetup(t testenv.TB, cfg HostsDataPathConfig, p map[string]*PathResult) []*pathTarget {
	const repo = "h13b/bench-web"
	hosts := testenv.StartEngineHosts(t, testenv.EngineHostsOpts{Prefix: "h13bb", N: cfg.Hosts, Net: 190})
	baton := NewBaton(t)
	dir := t.TempDir()
	floorPort := testenv.FreePort(t)
	var floor []string
	services := map[string][]string{"relay": nil, "kernel": nil}
	for i, h := range hosts {
		testenv.DemoImage(t, h.Client, testenv.DemoImageOpts{Repo: repo, Tag: "v1", Version: "v1", HealthCheck: true, HealthInterval: benchHealthInterval})
		id := testenv.RunDemo(t, h.Client, testenv.RunOpts{Name: "h13b-floor", Image: repo + ":v1", Publish: []string{net.JoinHostPort(h.Addr, strconv.Itoa(floorPort)) + ":8080"}})
		testenv.WaitHealthy(t, h.Client, id, 60*time.Second)
		floor = append(floor, net.JoinHostPort(h.Addr, strconv.Itoa(floorPort)))
		for kind := range services {
			name := "h13b-" + kind
			id := testenv.RunDemo(t, h.Client, testenv.RunOpts{Name: name, Image: repo + ":v1"})
			testenv.WaitHealthy(t, h.Client, id, 60*time.Second)
			services[kind] = append(services[kind], fmt.Sprintf("host%d relay-address=%s docker-host=%s", i+1, h.Addr, h.Socket))
		}
	}
	published := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: filepath.Join(dir, "floor.conf"), InitialServers: floor})
	targets := []*pathTarget{{p: p[PathHostsPublished], url: published.URL()}}
	for _, kind := range []string{"relay", "kernel"} {
		name := "h13b-" + kind
		hostsFile := filepath.Join(dir, kind+".hosts")
		if err := os.WriteFile(hostsFile, []byte(strings.Join(services[kind], "\n")+"\n"), 0o600); err != nil {
			t.Fatalf("%v", err)
		}
		if err := os.MkdirAll(filepath.Join(dir, kind), 0o755); err != nil {
			t.Fatalf("%v", err)
		}
		ngx := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: filepath.Join(dir, kind, "web.conf")})
		args := []string{"deploy", name, "--image", repo + ":v1", "--pull", "never", "--hosts", hostsFile, "--json",
			"--nginx-upstream", ngx.UpstreamFile(), "--nginx-reload", ngx.ReloadCommand(), "--relay-port", strconv.Itoa(testenv.FreePort(t)), "--http-probe", "/healthz"}
		path := PathHostsRelay
		if kind == "kernel" {
			args = append(args, "--kernel-path")
			path = PathHostsKernel
		}
		if _, err := runRollout(t.Context(), baton, dir, args); err != nil {
			t.Fatalf("%v", err)
		}
		tg := &pathTarget{p: p[path], url: ngx.URL()}
		if kind == "kernel" {
			tg.kernel, tg.kernelService = hostsTables(hosts), name
		}
		targets = append(targets, tg)
	}
	return targets
}

// hostsTables counts a service's kernel-path connections over every
// host's firewall (its network namespace's).
type hostsTables []*testenv.EngineHost

func (hs hostsTables) Connections(ctx context.Context, service string) (uint64, error) {
	var n uint64
	for _, h := range hs {
		c, err := kernelpath.NewTable(netnsIptables(h.Name)).Connections(ctx, service)
		if err != nil {
			return 0, fmt.Errorf("host %s: %w", h.Name, err)
		}
		if c == 0 {
			return 0, fmt.Errorf("host %s: the kernel path of %s carried no connection", h.Name, service)
		}
		n += c
	}
	return n, nil
}

// netnsIptables runs iptables in network namespace ns (ip netns exec).
type netnsIptables string

func (ns netnsIptables) Run(ctx context.Context, args ...string) ([]byte, error) {
	// An *exec.ExitError has the ExitCode that kernelpath.Runner asks of
	// a failure.
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", string(ns), "iptables", "-w", "5"}, args...)...).Output()
}
