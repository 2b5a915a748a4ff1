package multihost

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/bench"
)

// TestRunHostsDataPath runs the data-path benchmark across hosts small (two
// engines in network namespaces; here, not in internal/bench, so that it
// runs once, not once per engine: its engines are its own): every path must carry load without a
// failed request, the kernel path's DNATs must count at least one
// connection per request of its row (no request of it crossed a relay),
// and the table must take its ratios to the published path.
func TestRunHostsDataPath(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Docker engines in network namespaces and nginx (skipped with -short)")
	}
	rep, err := bench.RunHostsDataPath(t.Context(), bench.HostsDataPathConfig{Hosts: 2, DataPathConfig: bench.DataPathConfig{Duration: time.Second, Rounds: 1, Out: testWriter{t}}})
	if rep == nil {
		t.Fatalf("RunHostsDataPath: %v", err)
	}
	var table strings.Builder
	if werr := rep.WriteTable(&table); werr != nil {
		t.Fatal(werr)
	}
	t.Logf("table:\n%s", table.String())
	if err != nil {
		t.Fatalf("RunHostsDataPath: %v", err)
	}
	if len(rep.Paths) != len(bench.HostsDataPaths()) {
		t.Fatalf("%d paths measured, want %d", len(rep.Paths), len(bench.HostsDataPaths()))
	}
	for _, p := range rep.Paths {
		if p.Rounds != 1 || p.Requests < bench.DefaultClients || p.Failed != 0 || p.Elapsed < time.Second || p.Latency.P50 <= 0 {
			t.Errorf("%s: %+v", p.Path, p)
		}
		kernel := p.Path == bench.PathHostsKernel
		if kernel && p.KernelConns < uint64(p.Requests) || !kernel && p.KernelConns != 0 {
			t.Errorf("%s: the kernel carried %d connections for %d requests", p.Path, p.KernelConns, p.Requests)
		}
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 1+len(bench.HostsDataPaths()) {
		t.Fatalf("table has %d lines, want a header and one per path", len(lines))
	}
	if f := strings.Fields(lines[1]); f[0] != bench.PathHostsPublished || f[2] != "1.00" {
		t.Errorf("published row %q: want its own ratio 1.00", lines[1])
	}
}

// testWriter sends a benchmark's progress lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
