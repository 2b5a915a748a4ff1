package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/testenv"
)

// stage is one mode's world, ready for measured deploys: the app, nginx in
// front of it, and for baton's modes the binary and the flags each deploy
// gets.
type stage struct {
	mode  string
	cli   *client.Client
	app   *App
	nginx *testenv.Nginx
	baton *Baton // nil in mode naive

	flags     []string // traffic flags given on every deploy (recorded anyway, but explicit is reproducible)
	swapPhase string   // the event from which clients may notice the swap
	traffic   string   // what baton must report as its traffic mode
}

// setUp builds the mode's world. The relay modes end with the set-up deploy
// that puts the relay in place (nginx's one reload); it runs before the
// load, as a user does it once.
func setUp(t testenv.TB, cli *client.Client, cfg Config, mode, name string) *stage {
	t.Helper()
	st := &stage{mode: mode, cli: cli, swapPhase: "switch"}
	publish := mode == ModeRelayHost || mode == ModeKernelPath || mode == ModeNone || mode == ModeNaive
	st.app = StartApp(t, cli, AppOpts{Name: name, Versions: []string{"A", "B"}, Warmup: cfg.Warmup, Publish: publish})
	if mode != ModeNaive {
		st.baton = NewBaton(t)
	}
	hostNginx := func(server string) *testenv.Nginx {
		return testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: filepath.Join(t.TempDir(), "app.conf"), InitialServers: []string{server}})
	}
	switch mode {
	case ModeRelayHost:
		st.nginx = hostNginx(st.app.HostAddr())
		st.flags = []string{"--nginx-upstream", st.nginx.UpstreamFile(), "--nginx-reload", st.nginx.ReloadCommand(), "--http-probe", "/healthz"}
		st.traffic = "relay"
	case ModeKernelPath:
		st.nginx = hostNginx(st.app.HostAddr())
		st.flags = []string{"--nginx-upstream", st.nginx.UpstreamFile(), "--nginx-reload", st.nginx.ReloadCommand(), "--http-probe", "/healthz", "--kernel-path"}
		st.traffic = "relay"
		removeKernelPath(t, st.app.Name)
	case ModeRelayContainer, ModeKernelContainer:
		st.nginx = testenv.ContainerNginx(t, cli, testenv.NginxOpts{Network: st.app.Network, UpstreamFile: "app.conf", InitialServers: []string{st.app.Name + ":8080"}})
		st.flags = []string{"--nginx-upstream", st.nginx.UpstreamFile(), "--nginx-container", st.nginx.Container(), "--http-probe", "/healthz"}
		if mode == ModeKernelContainer {
			st.flags = append(st.flags, "--kernel-path")
		}
		st.traffic = "relay"
	case ModeNginxReload:
		ip := testenv.ContainerIP(t, cli, st.app.ID, st.app.Network)
		st.nginx = hostNginx(ip + ":8080")
		st.flags = []string{"--relay=false", "--nginx-upstream", st.nginx.UpstreamFile(), "--nginx-reload", st.nginx.ReloadCommand(), "--http-probe", "/healthz"}
		st.traffic = "nginx"
	case ModeNone:
		st.nginx = hostNginx(st.app.HostAddr())
		st.swapPhase = "stop-old" // no switch: clients notice when the old container stops
		st.traffic = "none"
	case ModeNaive:
		st.nginx = hostNginx(st.app.HostAddr())
	default:
		t.Fatalf("bench: unknown mode %q", mode)
	}
	if st.traffic == "relay" {
		SetUpRelay(t, st.baton, st.app, st.nginx, st.flags, nil)
	}
	return st
}

// removeKernelPath takes the service's kernel path (the host's firewall
// rules) away when the run ends, whatever it left.
func removeKernelPath(t testenv.TB, service string) {
	tbl := kernelpath.NewTable(kernelpath.ExecRunner{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if err := tbl.Remove(ctx, service); err != nil {
			t.Errorf("%v", err)
		}
	})
}

// SetUpRelay runs the one deploy that puts baton's relay between nginx and
// the app (`--force`: the image stays the same) and checks nginx's upstream
// now names the relay. With w, baton's own output goes there as it comes.
func SetUpRelay(t testenv.TB, b *Baton, app *App, ng *testenv.Nginx, flags []string, w io.Writer) {
	t.Helper()
	before, err := os.ReadFile(ng.UpstreamFile())
	if err != nil {
		t.Fatalf("nginx upstream: %v", err)
	}
	args := append(append([]string{"--force", "--pull", "never"}, flags...), app.Name)
	var run *DeployRun
	if w != nil {
		run, err = b.DeployStream(t.Context(), w, args...)
	} else {
		run, err = b.Deploy(t.Context(), args...)
	}
	if err == nil {
		err = run.Err()
	}
	if err != nil {
		t.Fatalf("setting up the relay for %s: %v", app.Name, err)
	}
	if run.Result == nil || run.Result.Traffic != "relay" {
		t.Fatalf("setting up the relay for %s: baton did not report traffic: relay (stdout %q)", app.Name, run.Stdout)
	}
	after, err := os.ReadFile(ng.UpstreamFile())
	if err != nil {
		t.Fatalf("nginx upstream: %v", err)
	}
	if string(after) == string(before) {
		t.Fatalf("setting up the relay for %s: nginx's upstream file %s still reads %q", app.Name, ng.UpstreamFile(), after)
	}
}

// deploy replaces the app with the image of version v and returns what it
// measured. A deploy that fails is returned with its error.
func (st *stage) deploy(t testenv.TB, n int, v string) (Deploy, error) {
	t.Helper()
	d := Deploy{N: n, Version: v, Image: st.app.Images[v]}
	if st.baton == nil {
		return st.naive(t, d)
	}
	args := append(append([]string{"--pull", "never", "--image", d.Image}, st.flags...), st.app.Name)
	run, err := st.baton.Deploy(t.Context(), args...)
	if err != nil {
		return d, err
	}
	d.Start, d.End, d.Duration, d.ExitCode = run.Start, run.End, run.Took(), run.ExitCode
	if run.Result != nil {
		d.BatonDuration = run.Result.Duration
		d.Phases = run.Result.Phases
	}
	if err := run.Err(); err != nil {
		return d, err
	}
	if run.Result == nil || run.Result.Outcome != "deployed" || run.Result.Traffic != st.traffic {
		return d, fmt.Errorf("baton %v: result %+v, want deployed with traffic %s", args, run.Result, st.traffic)
	}
	swap, ok := run.EventAt(st.swapPhase)
	if !ok {
		return d, fmt.Errorf("baton %v: no %s event in its output:\n%s", args, st.swapPhase, run.Stdout)
	}
	d.Swap = Window{Start: swap.Add(-windowPad), End: run.End.Add(windowPad)}
	d.ToTraffic = swap.Sub(run.Start)
	return d, nil
}

// naive replaces the app the way it is done without baton: stop the old
// container, remove it, run the new one under the same name, network and
// published port, then wait until it is healthy. Clients get errors from
// the stop until the new one is ready; that span is the swap window.
func (st *stage) naive(t testenv.TB, d Deploy) (Deploy, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	d.Start = time.Now()
	if err := st.cli.ContainerStop(ctx, st.app.Name, container.StopOptions{}); err != nil {
		return d, fmt.Errorf("container %s: stop: %w", st.app.Name, err)
	}
	if err := st.cli.ContainerRemove(ctx, st.app.Name, container.RemoveOptions{}); err != nil {
		return d, fmt.Errorf("container %s: remove: %w", st.app.Name, err)
	}
	st.app.ID = st.app.run(t, st.cli, d.Image)
	d.End = time.Now()
	d.Duration = d.End.Sub(d.Start)
	d.Swap = Window{Start: d.Start, End: d.End}
	return d, nil
}
