package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/rollout"
	"github.com/baton-sh/baton/internal/testenv"
)

// MultiHostConfig says how RunMultiHost measures rollouts across hosts.
type MultiHostConfig struct {
	Hosts    int // engines, each in its own network namespace (default 3)
	Rollouts int // measured rollouts (default DefaultDeploys)
	Clients  int
	Rate     float64
	Warmup   time.Duration
	// KernelPath rolls out with --kernel-path: between rollouts each
	// host's kernel carries nginx's connections past its relay.
	KernelPath bool
	Out        io.Writer // progress lines
}

// MultiHostReport is what RunMultiHost measured.
type MultiHostReport struct {
	Hosts        int             `json:"hosts"`
	KernelPath   bool            `json:"kernel_path"`
	Rollouts     int             `json:"rollouts"`
	Total        int             `json:"requests"`
	Failed       int             `json:"failed"`
	EngineStart  []time.Duration `json:"engine_start_ns"` // per engine, started side by side
	RolloutTimes []time.Duration `json:"rollout_ns"`      // whole rollout, per rollout
	HostTimes    []time.Duration `json:"host_deploy_ns"`  // per host deploy, all rollouts
	Summary      string          `json:"load_summary"`
}

// String is the report as a few lines.
func (r *MultiHostReport) String() string {
	var b strings.Builder
	mode := "relay"
	if r.KernelPath {
		mode = "relay with --kernel-path"
	}
	fmt.Fprintf(&b, "multi-host (%s): %d hosts, %d rollouts, failed %d/%d requests\n", mode, r.Hosts, r.Rollouts, r.Failed, r.Total)
	fmt.Fprintf(&b, "  whole rollout: %s\n", PercentilesOfDurations(r.RolloutTimes))
	fmt.Fprintf(&b, "  per-host deploy: %s\n", PercentilesOfDurations(r.HostTimes))
	fmt.Fprintf(&b, "  engine start: %v\n", r.EngineStart)
	return b.String()
}

// PercentilesOfDurations is loadgen's percentile summary of ds.
func PercentilesOfDurations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return loadgen.PercentilesOf(ds).String()
}

// RunMultiHost starts cfg.Hosts engines (testenv.StartEngineHosts) with the
// demo app on each behind one host nginx balancing across their relays, and
// rolls the app out cfg.Rollouts times under steady keep-alive load.
func RunMultiHost(ctx context.Context, cfg MultiHostConfig) (*MultiHostReport, error) {
	if cfg.Hosts <= 0 {
		cfg.Hosts = 3
	}
	if cfg.Rollouts <= 0 {
		cfg.Rollouts = DefaultDeploys
	}
	if cfg.Clients <= 0 {
		cfg.Clients = DefaultClients
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = DefaultWarmup
	}
	env := testenv.NewEnv(ctx, "bench-multihost", cfg.Out)
	defer func() { _ = env.Close() }()
	var rep *MultiHostReport
	err := env.Run(func(t testenv.TB) { rep = runMultiHost(t, cfg) })
	if err == nil {
		err = env.Err()
	}
	return rep, err
}

func runMultiHost(t testenv.TB, cfg MultiHostConfig) *MultiHostReport {
	const name, repo = "h10b-bench-web", "h10b/bench-web"
	rep := &MultiHostReport{Hosts: cfg.Hosts, Rollouts: cfg.Rollouts, KernelPath: cfg.KernelPath}
	hosts := testenv.StartEngineHosts(t, testenv.EngineHostsOpts{Prefix: "h10bb", N: cfg.Hosts, Net: 220})
	baton := NewBaton(t)
	var lines []string
	for i, h := range hosts {
		rep.EngineStart = append(rep.EngineStart, h.StartTime)
		for _, v := range []string{"v1", "v2"} {
			testenv.DemoImage(t, h.Client, testenv.DemoImageOpts{Repo: repo, Tag: v, Version: v, Env: map[string]string{"WARMUP": cfg.Warmup.String()}, HealthCheck: true, HealthInterval: benchHealthInterval})
		}
		id := testenv.RunDemo(t, h.Client, testenv.RunOpts{Name: name, Image: repo + ":v1"})
		testenv.WaitHealthy(t, h.Client, id, 60*time.Second)
		lines = append(lines, fmt.Sprintf("host%d relay-address=%s docker-host=%s", i+1, h.Addr, h.Socket))
	}
	dir := t.TempDir()
	hostsFile := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hostsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "nginx"), 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	ngx := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: filepath.Join(dir, "nginx", "web.conf")})
	deployAll := func(image string, extra ...string) *rollout.Result {
		args := append([]string{"deploy", name, "--image", image, "--pull", "never", "--hosts", hostsFile, "--json"}, extra...)
		res, err := runRollout(t.Context(), baton, dir, args)
		if err != nil {
			t.Fatalf("%v", err)
		}
		return res
	}
	first := []string{"--nginx-upstream", ngx.UpstreamFile(), "--nginx-reload", ngx.ReloadCommand(), "--relay-port", strconv.Itoa(testenv.FreePort(t))}
	if cfg.KernelPath {
		first = append(first, "--kernel-path")
	}
	deployAll(repo+":v2", first...)
	load, err := loadgen.Start(t.Context(), loadgen.Config{URL: ngx.URL(), Clients: cfg.Clients, Rate: cfg.Rate, Duration: loadBound(cfg.Rollouts * cfg.Hosts)})
	if err != nil {
		t.Fatalf("%v", err)
	}
	for i := range cfg.Rollouts {
		start := time.Now()
		res := deployAll(repo + ":" + []string{"v1", "v2"}[i%2])
		rep.RolloutTimes = append(rep.RolloutTimes, time.Since(start))
		for _, h := range res.Hosts {
			rep.HostTimes = append(rep.HostTimes, h.Duration)
		}
		t.Logf("rollout %d/%d: %s in %s", i+1, cfg.Rollouts, res.Summary, time.Since(start).Round(100*time.Millisecond))
	}
	lr := load.Stop()
	rep.Total, rep.Failed, rep.Summary = lr.Total(), lr.Failed(), lr.Summary()
	return rep
}

// runRollout runs one `baton deploy --hosts ... --json` and returns its
// rollout result; a rollout that did not exit 0 is an error.
func runRollout(ctx context.Context, b *Baton, dir string, args []string) (*rollout.Result, error) {
	cmd := exec.CommandContext(ctx, b.Bin, args...)
	cmd.Env = append(os.Environ(), "BATON_STATE_DIR="+b.StateDir, "BATON_UPSTREAM_DIRS="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	for _, line := range strings.Split(stdout.String(), "\n") {
		if !strings.HasPrefix(line, `{"type":"rollout"`) {
			continue
		}
		var res rollout.Result
		if jerr := json.Unmarshal([]byte(line), &res); jerr != nil {
			return nil, fmt.Errorf("rollout result: %w", jerr)
		}
		if err != nil {
			return &res, fmt.Errorf("baton %s: %v: %s", strings.Join(args, " "), err, res.Summary)
		}
		return &res, nil
	}
	return nil, fmt.Errorf("baton %s: %v, no rollout result: %s", strings.Join(args, " "), err, lastLines(stderr.String(), 5))
}
