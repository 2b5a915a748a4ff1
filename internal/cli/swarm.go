package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/docker/docker/errdefs"
	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/state"
	"github.com/baton-sh/baton/internal/swarmdeploy"
)

// swarmFlags are baton deploy's flags for a Docker Swarm service.
func swarmFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "swarm", Usage: "the target is a Swarm service (found by name anyway when no container has it)", Category: "Swarm"},
		&ucli.Uint64Flag{Name: "update-parallelism", Usage: "tasks updated at once", DefaultText: "1", Category: "Swarm"},
		&ucli.DurationFlag{Name: "update-delay", Usage: "wait between batches of tasks", DefaultText: "0s", Category: "Swarm"},
		&ucli.DurationFlag{Name: "update-monitor", Usage: "how long a new task is watched after it runs before the update counts it good", DefaultText: swarmdeploy.DefaultMonitor.String(), Category: "Swarm"},
		&ucli.StringFlag{Name: "update-failure-action", Value: string(swarmdeploy.FailureRollback), Usage: "rollback, pause or continue when a new task fails", Category: "Swarm"},
		&ucli.StringFlag{Name: "probe-cmd", Usage: "with --http-probe: `CMD` in the service's image that exits 0 when the URL given as its last argument answers 2xx (e.g. '/app -probe'); baton makes it the tasks' HEALTHCHECK; run without a shell, never taken from a label", Category: "Swarm"},
	}
}

// swarmTarget says whether a deploy of target goes to a Swarm service: with
// --swarm, or when no container has the name and a service does.
func swarmTarget(c *ucli.Context, eng *dockerctl.Client, target string) (bool, error) {
	if c.Bool("swarm") {
		return true, nil
	}
	if _, err := eng.ContainerInspect(c.Context, target); err == nil || !errdefs.IsNotFound(err) {
		return false, nil
	}
	_, found, err := swarmdeploy.FindService(c.Context, eng, target)
	return found, err
}

// checkSwarmValues refuses Swarm flag values that cannot be right for any
// service (exit 2), before an engine is reached.
func checkSwarmValues(c *ucli.Context) error {
	if _, err := swarmdeploy.ParseFailureAction(c.String("update-failure-action")); err != nil {
		return usageErr("%v", err)
	}
	if line := c.String("probe-cmd"); c.IsSet("probe-cmd") {
		if argv, err := deploy.SplitCommand(line); err != nil || len(argv) == 0 {
			return usageErr("--probe-cmd %q: %v", line, orEmpty(err))
		}
	}
	return nil
}

func swarmOptions(c *ucli.Context, opts deployOptions, pull deploy.PullPolicy) (swarmdeploy.Options, error) {
	fa, err := swarmdeploy.ParseFailureAction(c.String("update-failure-action"))
	if err != nil {
		return swarmdeploy.Options{}, err
	}
	for _, name := range []string{"warmup-requests", "docker-health-only", "nginx-upstream", "nginx-reload", "nginx-container", "relay", "relay-port", "pre-switch", "drain-signal", "accept-drift"} {
		if c.IsSet(name) {
			return swarmdeploy.Options{}, usageErr("--%s does not apply to a Swarm service: Swarm runs the health check inside each task (--http-probe with --probe-cmd, or the image's HEALTHCHECK) and nginx reaches the tasks itself (resolver 127.0.0.11; tasks.%s)", name, opts.target)
		}
	}
	probe := swarmdeploy.Probe{HTTPPath: c.String("http-probe"), TCP: c.Bool("tcp-probe"), Port: c.Int("port")}
	if line := c.String("probe-cmd"); line != "" {
		argv, err := deploy.SplitCommand(line)
		if err != nil || len(argv) == 0 {
			return swarmdeploy.Options{}, usageErr("--probe-cmd %q: %v", line, orEmpty(err))
		}
		probe.Cmd = argv
	}
	for _, name := range []string{"bake", "bake-max-dial-errors", "bake-max-resets", "canary", "relay-address", "kernel-path"} {
		if c.IsSet(name) {
			return swarmdeploy.Options{}, usageErr("--%s does not apply to a Swarm service: it needs baton's relay in front of one container; Swarm's updater watches new tasks itself (--update-monitor, --update-failure-action rollback)", name)
		}
	}
	o := swarmdeploy.Options{
		Service: opts.target, Image: opts.image, Pull: pull, Force: opts.force, DryRun: opts.dryRun,
		Parallelism: c.Uint64("update-parallelism"), Delay: c.Duration("update-delay"),
		Monitor: c.Duration("update-monitor"), FailureAction: fa,
		StopGrace: c.Duration("stop-timeout"), Drain: c.Duration("drain"),
		HealthTimeout: c.Duration("health-timeout"), Probe: probe, Trigger: "cli", Who: cliUser(),
	}
	o.RegistryAuth = func(ref string) (string, error) { return dockerctl.RegistryAuth(ref, c.App.ErrWriter) }
	return o, nil
}

// orEmpty names an empty command, which SplitCommand accepts.
func orEmpty(err error) error {
	if err == nil {
		return errors.New("an empty command")
	}
	return err
}

func runSwarmDeploy(c *ucli.Context, eng *dockerctl.Client, opts deployOptions, pull deploy.PullPolicy, stack *swarmdeploy.Stack) error {
	out := newOutput(c.App.Writer, c.App.ErrWriter, opts.json, opts.quiet)
	o, err := swarmOptions(c, opts, pull)
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	} else if err != nil {
		return deployErr(err)
	}
	o.Stack = stack
	d := swarmDeployer(eng, swarmLocks(c, eng, out), out, logger(c))
	res, err := d.Deploy(c.Context, o)
	if !opts.dryRun {
		journalSwarm(c, eng, out, res)
	}
	swarmResult(out, res, err, opts.json)
	return deployErr(err)
}

// swarmDeployer is a service deployer on eng.
func swarmDeployer(eng *dockerctl.Client, locks *state.Dir, report deploy.Reporter, log *slog.Logger) *swarmdeploy.Deployer {
	d := &swarmdeploy.Deployer{Engine: eng, Report: report, Log: log}
	if locks != nil {
		d.Locks = locks
	}
	if !eng.Endpoint.Local {
		// The routing mesh's IPVS is the engine's kernel's, which this
		// machine's /proc does not show.
		d.IPVSPresent = func() bool { return true }
		log.Warn("the engine is on another machine: its kernel's IPVS (routing mesh) is not checked", "engine", eng.Endpoint.Name)
	}
	return d
}

// swarmLocks is the engine's state directory, whose locks keep a CLI
// deploy of a service from running beside a watch or webhook one; nil (no
// lock, said in a note) when it cannot be opened.
func swarmLocks(c *ucli.Context, eng *dockerctl.Client, out *output) *state.Dir {
	st, err := state.Open(engineStateDir(c, eng.Endpoint.Host))
	if err != nil {
		out.note("no deploy lock: " + err.Error())
		return nil
	}
	return st
}

// isService says whether an unattended deploy of target is a Swarm
// service's: no container has the name and a service does.
func isService(ctx context.Context, eng *dockerctl.Client, target string) (bool, error) {
	if _, err := eng.ContainerInspect(ctx, target); err == nil || !errdefs.IsNotFound(err) {
		return false, nil
	}
	_, found, err := swarmdeploy.FindService(ctx, eng, target)
	return found, err
}

func runSwarmRollback(c *ucli.Context, eng *dockerctl.Client, target string, asJSON, quiet bool) error {
	out := newOutput(c.App.Writer, c.App.ErrWriter, asJSON, quiet)
	d := &swarmdeploy.Deployer{Engine: eng, Report: out, Log: logger(c)}
	if st := swarmLocks(c, eng, out); st != nil {
		d.Locks = st
	}
	res, err := d.Rollback(c.Context, swarmdeploy.Options{Service: target, Trigger: "cli", Who: cliUser()})
	journalSwarm(c, eng, out, res)
	swarmResult(out, res, err, asJSON)
	return deployErr(err)
}

// journalSwarm records a service deploy in baton history like a
// container's.
func journalSwarm(c *ucli.Context, eng *dockerctl.Client, out *output, res *deploy.Result) {
	st, err := state.Open(engineStateDir(c, eng.Endpoint.Host))
	if err != nil {
		out.note("history not recorded: " + err.Error())
		return
	}
	if err := journal.Open(st.Path()).Append(journal.FromResult(res, nil, journal.NewID(), nil)); err != nil {
		out.Event(deploy.Event{Time: time.Now(), Phase: "journal", Message: err.Error(), Warning: true})
	}
}

func swarmResult(out *output, res *deploy.Result, err error, asJSON bool) {
	if err != nil && !asJSON {
		return
	}
	if !asJSON && res.Outcome == deploy.OutcomeDryRun {
		fmt.Fprintf(out.stdout, "service %s: %s\n", res.Service, res.OldImage)
		for _, n := range res.Notes {
			fmt.Fprintf(out.stdout, "  %s\n", n)
		}
		return
	}
	if asJSON {
		out.result(res)
		return
	}
	switch res.Outcome {
	case deploy.OutcomeDeployed:
		fmt.Fprintf(out.stdout, "deployed service %s: %s -> %s in %s\n", res.Service, res.OldImage, res.NewImage, res.Duration.Round(100*time.Millisecond))
	case deploy.OutcomeUpToDate:
		fmt.Fprintf(out.stdout, "service %s is up to date: %s\n", res.Service, res.NewImage)
	}
	if res.Recovered != "" {
		fmt.Fprintf(out.stderr, "note: %s\n", res.Recovered)
	}
}

func runSwarmStatus(c *ucli.Context, eng *dockerctl.Client, target string, asJSON bool) error {
	st, err := swarmdeploy.Status(c.Context, eng, target)
	if err != nil {
		return deployErr(err)
	}
	if asJSON {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode([]swarmdeploy.ServiceStatus{st})
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tIMAGE\tTASKS\tUPDATE\tSINCE\tPREVIOUS IMAGE")
	fmt.Fprintf(tw, "%s\t%s\t%d/%d running\t%s\t%s\t%s\n", st.Service, orDash(st.Image), st.Running, st.Desired, orDash(st.Update), since(st.Since.Format(time.RFC3339Nano)), orDash(st.PreviousImage))
	return tw.Flush()
}
