package bench_test

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/bench"
)

// TestRunDataPath runs the data-path benchmark small: every path must carry
// load without a failed request, the relay paths must show the relay's CPU,
// the paths through a published port that of docker-proxy, and the table
// must print a row per path with its ratios to the direct path.
func TestRunDataPath(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the Docker daemon and nginx (skipped with -short)")
	}
	rep, err := bench.RunDataPath(t.Context(), bench.DataPathConfig{Duration: time.Second, Rounds: 1, Out: logWriter{t}})
	if rep == nil {
		t.Fatalf("RunDataPath: %v", err)
	}
	var table strings.Builder
	if werr := rep.WriteTable(&table); werr != nil {
		t.Fatal(werr)
	}
	t.Logf("table:\n%s", table.String())
	if err != nil {
		t.Fatalf("RunDataPath: %v", err)
	}
	if len(rep.Paths) != len(bench.DataPaths()) {
		t.Fatalf("%d paths measured, want %d", len(rep.Paths), len(bench.DataPaths()))
	}
	for _, p := range rep.Paths {
		// At least one request per client: a floor on throughput would be a
		// timed assertion, and a machine at load 70 (measured while other
		// suites ran) carries a path at 10 requests/s.
		if p.Rounds != 1 || p.Requests < bench.DefaultClients || p.Failed != 0 || p.Elapsed < time.Second || p.Latency.P50 <= 0 || p.Latency.Max < p.Latency.P99 {
			t.Errorf("%s: %+v", p.Path, p)
		}
		if p.AppCPU <= 0 {
			t.Errorf("%s: app CPU %s, want the app's cgroup usage", p.Path, p.AppCPU)
		}
		relay := strings.HasPrefix(p.Path, "relay-")
		if relay != (p.RelayCPU > 0) {
			t.Errorf("%s: relay CPU %s", p.Path, p.RelayCPU)
		}
		// The kernel path's counter must show it, not the relay, carried
		// the load: at least a connection per request (nginx opens one
		// upstream connection per request there).
		if (p.Path == bench.PathKernel || p.Path == bench.PathKernelContainer) && p.KernelConns < uint64(p.Requests) {
			t.Errorf("%s: the kernel carried %d connections for %d requests", p.Path, p.KernelConns, p.Requests)
		}
		proxied := p.Path == bench.PathPublished
		if !proxied && p.ProxyCPU != 0 {
			t.Errorf("%s: docker-proxy CPU %s on a path without docker-proxy", p.Path, p.ProxyCPU)
		}
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 1+len(bench.DataPaths()) || !strings.Contains(lines[0], "x direct") {
		t.Fatalf("table has %d lines, want a header and one per path", len(lines))
	}
	if f := strings.Fields(lines[1]); f[0] != bench.PathDirect || f[2] != "1.00" {
		t.Errorf("direct row %q: want its own ratio 1.00", lines[1])
	}
}
