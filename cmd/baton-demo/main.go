// Command baton-demo shows baton at work in about a minute: it runs the demo
// app as shop-web v1 behind nginx on this host, puts baton's relay in front
// of it with one deploy, then deploys v2, v3 and v1 again under live load,
// with baton's own output, and tallies what the clients saw. It exits 0 only
// if no request failed. Everything it creates is removed at the end, on an
// error or on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/bench"
	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	name    string
	clients int
	rate    float64
}

// deployed is one of the demo's deploys.
type deployed struct {
	version string
	took    time.Duration // as baton reports it, else the command's wall time
	err     error
}

// run returns the exit code: 0 no request failed, 1 some did or the demo
// could not run, 2 bad flags.
func run(ctx context.Context, args []string, stdout *os.File, stderr io.Writer) int {
	fs := flag.NewFlagSet("baton-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.name, "name", "shop-web", "the service's container `NAME`")
	fs.IntVar(&o.clients, "clients", bench.DefaultClients, "concurrent clients, one keep-alive connection each")
	fs.Float64Var(&o.rate, "rate", bench.DefaultRate, "requests per second per client")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.clients <= 0 || o.rate <= 0 || o.name == "" {
		fmt.Fprintln(stderr, "baton-demo: takes no arguments; -clients and -rate must be positive, -name not empty")
		return 2
	}
	env := testenv.NewEnv(ctx, "baton-demo", stderr)
	var (
		res     *loadgen.Result
		deploys []deployed
	)
	runErr := env.Run(func(t testenv.TB) { res, deploys = demo(t, o, stdout) })
	if res != nil {
		tally(stdout, res, deploys)
	}
	say(stdout, "cleaning up")
	closeErr := env.Close() // holds Run's failures too
	switch {
	case closeErr != nil:
		fmt.Fprintf(stderr, "baton-demo: %v\n", closeErr)
		return 1
	case runErr != nil:
		fmt.Fprintf(stderr, "baton-demo: %v\n", runErr)
		return 1
	case res == nil || res.Failed() > 0:
		return 1
	}
	for _, d := range deploys {
		if d.err != nil {
			return 1
		}
	}
	return 0
}

// demo runs the show and returns what the load saw. It ends through
// t.Fatalf when it cannot go on.
func demo(t testenv.TB, o options, w *os.File) (*loadgen.Result, []deployed) {
	cli := testenv.Docker(t)
	checkNameFree(t, cli, o.name)
	versions := []string{"v1", "v2", "v3"}
	say(w, "building baton, and the demo app as %s %s (each answers with its VERSION)", o.name, strings.Join(versions, ", "))
	b := bench.NewBaton(t)
	app := bench.StartApp(t, cli, bench.AppOpts{Name: o.name, Repo: "baton-demo/" + o.name, Versions: versions, Publish: true})
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/" + o.name + ".conf", InitialServers: []string{app.HostAddr()}})
	say(w, "%s v1 runs, publishing %s; nginx proxies to it at %s/ (try: curl %s/)", o.name, app.HostAddr(), ng.URL(), ng.URL())

	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz"}
	say(w, "first deploy: baton puts its relay between nginx and %s; the only nginx reload it does", o.name)
	command(w, append(append([]string{"--force", "--pull", "never"}, flags...), o.name))
	bench.SetUpRelay(t, b, app, ng, flags, w)

	say(w, "load: %d clients, keep-alive GET and POST, %.0f req/s each, through nginx", o.clients, o.rate)
	load, err := loadgen.Start(t.Context(), loadgen.Config{URL: ng.URL() + "/", Clients: o.clients, Rate: o.rate, Duration: 3 * time.Minute})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer load.Stop() // on a Fatalf; Stop may be called again
	if err := bench.WaitFlowing(t.Context(), load, o.clients); err != nil {
		t.Fatalf("%v", err)
	}
	var deploys []deployed
	for _, v := range []string{"v2", "v3", "v1"} {
		// The settings were recorded on the container by the first deploy:
		// from now on a deploy names only the image.
		args := []string{"--pull", "never", "--image", app.Images[v], o.name}
		say(w, "deploy %s under load", v)
		command(w, args)
		run, err := b.DeployStream(t.Context(), w, args...)
		if err == nil {
			err = run.Err()
		}
		d := deployed{version: v, err: err}
		if run != nil {
			d.took = run.Took()
			if run.Result != nil {
				d.took = run.Result.Duration
			}
		}
		deploys = append(deploys, d)
		if err != nil {
			fmt.Fprintf(w, "deploy %s failed: %v\n", v, err)
			break
		}
		// Let the load run on the new version before the next deploy.
		timer := time.NewTimer(time.Second)
		select {
		case <-t.Context().Done():
		case <-timer.C:
		}
		timer.Stop()
	}
	res := load.Stop()
	return res, deploys
}

// checkNameFree fails early, with the way out, when the service's name (or
// its relay) is taken, say by an earlier demo that was killed.
func checkNameFree(t testenv.TB, cli *client.Client, name string) {
	for _, c := range []string{name, traffic.RelayName(name)} {
		_, err := cli.ContainerInspect(t.Context(), c)
		if err == nil {
			t.Fatalf("a container named %s exists already (another demo running, or left by a killed one?); "+
				"remove it (docker rm -f %s %s; docker volume rm %s) or pass -name", c, name, traffic.RelayName(name), traffic.RelayName(name))
		}
		if !cerrdefs.IsNotFound(err) {
			t.Fatalf("container %s: inspect: %v", c, err)
		}
	}
}

// tally prints what the clients saw.
func tally(w io.Writer, res *loadgen.Result, deploys []deployed) {
	vs := res.Versions()
	counts := make([]string, 0, len(vs))
	for _, v := range slices.Sorted(maps.Keys(vs)) {
		counts = append(counts, fmt.Sprintf("%s=%d", v, vs[v]))
	}
	ds := make([]string, 0, len(deploys))
	for _, d := range deploys {
		s := fmt.Sprintf("%s %s", d.version, d.took.Round(100*time.Millisecond))
		if d.err != nil {
			s += " (failed)"
		}
		ds = append(ds, s)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "requests sent:  %d\n", res.Total())
	fmt.Fprintf(w, "failed:         %d\n", res.Failed())
	fmt.Fprintf(w, "answered by:    %s\n", strings.Join(counts, "  "))
	fmt.Fprintf(w, "deploys:        %s\n", strings.Join(ds, ", "))
	fmt.Fprintf(w, "latency:        %s\n", res.Overall())
	for _, r := range bench.FailureReasons(res, 5) {
		fmt.Fprintf(w, "  %6d x %s\n", r.Count, r.Reason)
	}
	if res.Failed() == 0 {
		fmt.Fprintln(w, "zero failed requests across the deploys.")
	}
}

func say(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "\n==> "+format+"\n", args...)
}

// command shows the baton command about to run.
func command(w io.Writer, args []string) {
	fmt.Fprintf(w, "$ baton deploy %s\n", strings.Join(args, " "))
}
