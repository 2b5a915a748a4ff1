package bench_test

import (
	"errors"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/bench"
	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// TestRunRelayHostKernelPathAndNaive runs the benchmark small: baton's
// relay with nginx on the host, with and without the kernel path, must lose
// no request, the naive baseline must have measured its deploys and a swap
// window with requests in it, and nothing any mode made (baton's relay and
// the kernel path's rules included) may be left afterwards.
func TestRunRelayHostKernelPathAndNaive(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the Docker daemon and nginx (skipped with -short)")
	}
	cli := testenv.Docker(t)
	rep, err := bench.Run(t.Context(), bench.Config{
		Modes: []string{bench.ModeRelayHost, bench.ModeKernelPath, bench.ModeNaive}, Deploys: 2, Rate: 20,
		Out: logWriter{t},
	})
	if rep != nil {
		var table strings.Builder
		if werr := errors.Join(rep.WriteTable(&table), rep.WriteDetails(&table)); werr != nil {
			t.Fatal(werr)
		}
		t.Logf("report:\n%s", table.String())
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Modes) != 3 || rep.Modes[0].Mode != bench.ModeRelayHost || rep.Modes[1].Mode != bench.ModeKernelPath || rep.Modes[2].Mode != bench.ModeNaive {
		t.Fatalf("modes %v, want relay-host, kernel-path and naive", modeNames(rep))
	}
	for _, m := range rep.Modes {
		if len(m.Deploys) != 2 {
			t.Fatalf("%s: %d deploys, want 2", m.Mode, len(m.Deploys))
		}
		for _, d := range m.Deploys {
			if d.Duration <= 0 || d.ExitCode != 0 || !d.Swap.End.After(d.Swap.Start) {
				t.Fatalf("%s: deploy %+v", m.Mode, d)
			}
		}
		if m.Requests < 100 || m.Outside.Count == 0 {
			t.Fatalf("%s: %d requests, %d outside the swaps: the load did not run", m.Mode, m.Requests, m.Outside.Count)
		}
		if m.Versions["A"] == 0 || m.Versions["B"] == 0 {
			t.Fatalf("%s: versions served %v, want both A and B", m.Mode, m.Versions)
		}
		assertGone(t, cli, m.Service)
	}
	for _, relay := range rep.Modes[:2] {
		if relay.Failed != 0 {
			t.Fatalf("%s: %d of %d requests failed: %v", relay.Mode, relay.Failed, relay.Requests, relay.Failures)
		}
		if relay.Inside.Count == 0 {
			t.Fatalf("%s: no request in progress during a swap window", relay.Mode)
		}
		// The engine's own start and stop, measured beside the deploys.
		if f := relay.Engine; f == nil || f.Runs == 0 || f.Networks < 2 || f.Start <= 0 || f.StartToReady < f.Start || f.Stop <= 0 {
			t.Fatalf("%s: engine floor %+v, want a start, a start to ready no shorter and a stop, on the serving container's networks", relay.Mode, f)
		}
	}
	if rep.Modes[2].Engine != nil {
		t.Fatalf("naive: an engine floor %+v, measured only beside baton's deploys", rep.Modes[2].Engine)
	}
	// The kernel path's rules went with the run.
	if has, err := kernelpath.NewTable(kernelpath.ExecRunner{}).Has(t.Context(), rep.Modes[1].Service); err != nil || has {
		t.Fatalf("kernel-path: the route of %s outlived the run (%v)", rep.Modes[1].Service, err)
	}
	naive := rep.Modes[2]
	if naive.DeployP50 <= 0 || naive.DeployMax < naive.DeployP50 {
		t.Fatalf("naive: deploy p50 %s max %s", naive.DeployP50, naive.DeployMax)
	}
	if naive.Inside.Count == 0 || naive.Inside.Max <= 0 {
		t.Fatalf("naive: inside-swap latency %+v, want requests during the swaps", naive.Inside)
	}
}

// assertGone checks no container of the service (its replacement, its
// relay) nor the relay's volume survived the run.
func assertGone(t *testing.T, cli *client.Client, name string) {
	t.Helper()
	if name == "" {
		t.Fatal("report names no service")
	}
	list, err := cli.ContainerList(t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "baton.service="+name))})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) > 0 {
		t.Fatalf("service %s: %d containers left, e.g. %v", name, len(list), list[0].Names)
	}
	for _, c := range []string{name, traffic.RelayName(name)} {
		if _, err := cli.ContainerInspect(t.Context(), c); !cerrdefs.IsNotFound(err) {
			t.Fatalf("container %s left behind (inspect: %v)", c, err)
		}
	}
	if _, err := cli.VolumeInspect(t.Context(), traffic.RelayName(name)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("volume %s left behind (inspect: %v)", traffic.RelayName(name), err)
	}
}

func modeNames(r *bench.Report) []string {
	var names []string
	for _, m := range r.Modes {
		names = append(names, m.Mode)
	}
	return names
}

// logWriter sends the benchmark's progress to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
