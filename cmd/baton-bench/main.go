// Command baton-bench measures zero-downtime redeploys: for each traffic mode
// of baton, and for a plain docker stop/rm/run as the baseline, it deploys
// the demo app back and forth under steady keep-alive load through nginx and
// reports failed requests, latency inside and outside the swaps, and deploy
// durations. With -datapath it measures instead what every request pays for
// its path from nginx to the app (direct, docker-proxy, baton's relay with
// nginx on the host and in a container, the nginx-reload mode): requests/s
// at saturation, latency, and the relay's and docker-proxy's CPU. With
// -revert it deploys a release that breaks under load with a bake and
// reports, per run, failed/total requests and the time to revert. With
// -swarm it updates a Swarm service, first with Swarm's own start-first
// update, then with baton, and reports failed/total and deploy times for
// each. Everything it creates is labelled baton.test=1 and removed at the
// end, on an error or on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/baton-sh/baton/internal/atomicfile"
	"github.com/baton-sh/baton/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run returns the exit code: 0 every mode ran, 1 one could not, 2 bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("baton-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modes := fs.String("modes", strings.Join(bench.Modes(), ","), "comma-separated `MODES` to measure")
	deploys := fs.Int("deploys", bench.DefaultDeploys, "measured deploys per mode")
	clients := fs.Int("clients", bench.DefaultClients, "concurrent load clients, one keep-alive connection each")
	rate := fs.Float64("rate", bench.DefaultRate, "requests per second per client (0: closed loop)")
	warmup := fs.Duration("warmup", bench.DefaultWarmup, "the demo app's warm-up after it starts, answering 503")
	jsonFile := fs.String("json", "", "write the full report as JSON to `FILE`")
	markdown := fs.Bool("markdown", false, "print the summary table as a Markdown table")
	compare := fs.String("compare", "", "measure nothing: print the reports in the comma-separated JSON `FILES` (from -json, one per engine) side by side")
	datapath := fs.Bool("datapath", false, "measure the data paths instead of deploys: requests/s at saturation, latency and the relay's CPU per path (uses -clients, -duration, -json, -markdown)")
	duration := fs.Duration("duration", bench.DefaultDataPathDuration, "with -datapath: how long each path is loaded per round")
	rounds := fs.Int("rounds", bench.DefaultDataPathRounds, "with -datapath: how often every path is measured, in turn")
	kernelPath := fs.Bool("kernel-path", false, "with -hosts: roll out with baton --kernel-path")
	hosts := fs.Int("hosts", 0, "measure rollouts across `N` engines instead (each in its own network namespace, one nginx balancing across their relays; uses -deploys as rollouts, -clients, -rate, -warmup, -kernel-path, -json); with -datapath, the data paths across N engines")
	revert := fs.Bool("revert", false, "measure bake reverts instead: -deploys deploys of a release that resets connections under load, each reverted by --bake-max-resets; per run failed/total and the revert time (uses -clients, -rate, -warmup, -json)")
	swarmMode := fs.Bool("swarm", false, "measure Swarm service updates instead: on a swarm of engines of its own, -deploys plain `docker service update --update-order start-first` updates, then as many baton deploys, each under the same load through nginx; failed/total and deploy times per side (uses -clients, -rate, -warmup, -json)")
	swarmNodes := fs.Int("swarm-nodes", 1, "with -swarm: the swarm's nodes, each an engine in its own network namespace")
	replicas := fs.Int("replicas", 2, "with -swarm: the service's replicas")
	resolverValid := fs.Duration("resolver-valid", time.Second, "with -swarm: how long nginx keeps the tasks' addresses (resolver valid=); longer than 1s, baton's side deploys with --update-delay 2s beyond it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *revert {
		if fs.NArg() > 0 || *hosts != 0 || *swarmMode || *datapath || *compare != "" || *deploys <= 0 || *clients <= 0 || *rate <= 0 || *warmup <= 0 {
			fmt.Fprintf(stderr, "baton-bench: -revert takes positive -deploys, -clients, -rate and -warmup, no arguments, and none of -hosts, -swarm, -datapath, -compare\n")
			return 2
		}
		rep, err := bench.RunRevert(ctx, bench.RevertConfig{Runs: *deploys, Clients: *clients, Rate: *rate, Warmup: *warmup, Out: stderr})
		return finish(rep, err, *jsonFile, stdout, stderr)
	}
	if *swarmMode {
		if fs.NArg() > 0 || *hosts != 0 || *datapath || *compare != "" || *swarmNodes < 1 || *swarmNodes > 9 || *replicas < 1 || *resolverValid < time.Second || *deploys <= 0 || *clients <= 0 || *rate <= 0 || *warmup <= 0 {
			fmt.Fprintf(stderr, "baton-bench: -swarm takes 1 to 9 -swarm-nodes, a -resolver-valid of 1s or more, positive -replicas, -deploys, -clients, -rate and -warmup, no arguments, and none of -hosts, -datapath, -compare\n")
			return 2
		}
		rep, err := bench.RunSwarm(ctx, bench.SwarmConfig{Nodes: *swarmNodes, Replicas: *replicas, ResolverValid: *resolverValid, Deploys: *deploys, Clients: *clients, Rate: *rate, Warmup: *warmup, Out: stderr})
		return finish(rep, err, *jsonFile, stdout, stderr)
	}
	if *hosts != 0 && *datapath {
		if fs.NArg() > 0 || *swarmMode || *kernelPath || *hosts < 2 || *hosts > 9 || *clients <= 0 || *duration <= 0 || *duration > 10*time.Minute || *rounds <= 0 || *rounds > 20 {
			fmt.Fprintf(stderr, "baton-bench: -hosts with -datapath takes 2 to 9 engines, a positive -clients, a -duration up to 10m, -rounds from 1 to 20, no arguments, and neither -swarm nor -kernel-path\n")
			return 2
		}
		rep, err := bench.RunHostsDataPath(ctx, bench.HostsDataPathConfig{Hosts: *hosts, DataPathConfig: bench.DataPathConfig{Clients: *clients, Duration: *duration, Rounds: *rounds, Out: stderr}})
		return finishDataPath(rep, err, stdout, stderr, *markdown, *jsonFile)
	}
	if *hosts != 0 {
		if fs.NArg() > 0 || *swarmMode || *hosts < 2 || *hosts > 9 || *deploys <= 0 || *clients <= 0 || *rate <= 0 || *warmup <= 0 {
			fmt.Fprintf(stderr, "baton-bench: -hosts takes 2 to 9 engines, positive -deploys, -clients, -rate and -warmup, no arguments, and not -swarm\n")
			return 2
		}
		rep, err := bench.RunMultiHost(ctx, bench.MultiHostConfig{Hosts: *hosts, Rollouts: *deploys, Clients: *clients, Rate: *rate, Warmup: *warmup, KernelPath: *kernelPath, Out: stderr})
		return finish(rep, err, *jsonFile, stdout, stderr)
	}
	if *compare != "" {
		return compareReports(strings.Split(*compare, ","), stdout, stderr)
	}
	if *datapath {
		if fs.NArg() > 0 || *clients <= 0 || *duration <= 0 || *duration > 10*time.Minute || *rounds <= 0 || *rounds > 20 {
			fmt.Fprintf(stderr, "baton-bench: -datapath takes no arguments, a positive -clients, a -duration up to 10m and -rounds from 1 to 20\n")
			fs.Usage()
			return 2
		}
		return runDataPath(ctx, bench.DataPathConfig{Clients: *clients, Duration: *duration, Rounds: *rounds, Out: stderr}, stdout, stderr, *markdown, *jsonFile)
	}
	cfg := bench.Config{Deploys: *deploys, Clients: *clients, Rate: *rate, Warmup: *warmup, Out: stderr}
	var bad []string
	if fs.NArg() > 0 {
		bad = append(bad, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	for _, m := range strings.Split(*modes, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Modes = append(cfg.Modes, m)
		}
	}
	if len(cfg.Modes) == 0 {
		bad = append(bad, "-modes names no mode")
	}
	if *deploys <= 0 || *clients <= 0 || *rate < 0 || *warmup <= 0 {
		bad = append(bad, "-deploys, -clients and -warmup must be positive, -rate not negative")
	}
	if *rate == 0 {
		cfg.Rate = bench.ClosedLoop
	}
	if len(bad) > 0 {
		fmt.Fprintf(stderr, "baton-bench: %s\n", strings.Join(bad, "; "))
		fs.Usage()
		return 2
	}

	rep, err := bench.Run(ctx, cfg)
	if rep == nil {
		fmt.Fprintf(stderr, "baton-bench: %v\n", err)
		return 2
	}
	if werr := write(stdout, rep, *markdown); werr != nil {
		err = errors.Join(err, werr)
	}
	if *jsonFile != "" {
		if jerr := writeJSON(*jsonFile, rep); jerr != nil {
			err = errors.Join(err, jerr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "baton-bench: %v\n", err)
		return 1
	}
	return 0
}

// runDataPath runs the data-path benchmark and prints its table: 0 every
// path was measured, 1 one could not be.
func runDataPath(ctx context.Context, cfg bench.DataPathConfig, stdout, stderr io.Writer, markdown bool, jsonFile string) int {
	rep, err := bench.RunDataPath(ctx, cfg)
	return finishDataPath(rep, err, stdout, stderr, markdown, jsonFile)
}

func finishDataPath(rep *bench.DataPathReport, err error, stdout, stderr io.Writer, markdown bool, jsonFile string) int {
	if rep == nil {
		fmt.Fprintf(stderr, "baton-bench: %v\n", err)
		return 1
	}
	werr := writeDataPath(stdout, rep, markdown)
	if jsonFile != "" {
		werr = errors.Join(werr, writeJSON(jsonFile, rep))
	}
	if err = errors.Join(err, werr); err != nil {
		fmt.Fprintf(stderr, "baton-bench: %v\n", err)
		return 1
	}
	return 0
}

func writeDataPath(w io.Writer, rep *bench.DataPathReport, markdown bool) error {
	if _, err := fmt.Fprintf(w, "\ndata paths: %d closed-loop keep-alive clients (GET+POST) through nginx, %d rounds of %s per path (each after 1s not counted), paths in turn; load average at the start %s\n\n",
		rep.Clients, rep.Rounds, rep.Duration, rep.LoadAvg); err != nil {
		return err
	}
	var err error
	if markdown {
		err = rep.WriteMarkdown(w)
	} else {
		err = rep.WriteTable(w)
	}
	return errors.Join(err, rep.WriteErrors(w))
}

func write(w io.Writer, rep *bench.Report, markdown bool) error {
	load := fmt.Sprintf("%.0f req/s each", rep.Rate)
	if rep.Rate < 0 {
		load = "closed loop"
	}
	if _, err := fmt.Fprintf(w, "\n%s: %d deploys per mode under %d keep-alive clients (%s, GET+POST) through nginx; app warm-up %s\n\n",
		rep.Engine, rep.Deploys, rep.Clients, load, rep.Warmup.Round(time.Millisecond)); err != nil {
		return err
	}
	var err error
	if markdown {
		err = rep.WriteMarkdown(w)
	} else {
		err = rep.WriteTable(w)
	}
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	return rep.WriteDetails(w)
}

// finish prints a report of the -revert, -hosts or -swarm modes (what was
// measured, also when a run failed part-way) and writes its JSON: 0 the
// mode ran to its end, 1 it could not.
func finish[P interface {
	*R
	String() string
}, R any](rep P, err error, jsonFile string, stdout, stderr io.Writer) int {
	if rep != nil {
		fmt.Fprint(stdout, rep.String())
		if jsonFile != "" {
			err = errors.Join(err, writeJSON(jsonFile, rep))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "baton-bench: %v\n", err)
		return 1
	}
	return 0
}

func writeJSON(path string, rep any) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return atomicfile.Write(path, append(data, '\n'), 0o644)
}

// compareReports prints the reports in files side by side: 0 done, 2 a file
// that is missing or not a report.
func compareReports(files []string, stdout, stderr io.Writer) int {
	var reps []*bench.Report
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "baton-bench: -compare: %v\n", err)
			return 2
		}
		var rep bench.Report
		if err := json.Unmarshal(data, &rep); err != nil {
			fmt.Fprintf(stderr, "baton-bench: -compare: %s is not a report written by -json: %v\n", f, err)
			return 2
		}
		reps = append(reps, &rep)
	}
	fmt.Fprintln(stdout)
	if err := bench.WriteSideBySide(stdout, reps); err != nil {
		fmt.Fprintf(stderr, "baton-bench: %v\n", err)
		return 1
	}
	return 0
}
