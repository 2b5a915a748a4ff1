package cli

import (
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/rollout"
)

// settingFlags are the flags that map onto deploy.Settings; each can also be
// recorded as a baton.<name> label.
func settingFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.IntFlag{Name: "port", Usage: "the app's container port that probes, the relay and nginx use", DefaultText: "the only port it exposes"},
		&ucli.StringFlag{Name: "http-probe", Usage: "GET `PATH` on the new container's own address until it answers 2xx", Category: "Health"},
		&ucli.BoolFlag{Name: "tcp-probe", Usage: "wait until the new container accepts TCP connections on --port", Category: "Health"},
		&ucli.DurationFlag{Name: "health-timeout", Usage: "how long the new container may take to become healthy", DefaultText: deploy.DefaultSettings().HealthTimeout.String(), Category: "Health"},
		&ucli.BoolFlag{Name: "docker-health-only", Usage: "wait for Docker's own runs of the image's HEALTHCHECK (the first comes one --interval after the start) instead of also running it in the new container every 250 ms until Docker says healthy", Category: "Health"},
		&ucli.IntFlag{Name: "warmup-requests", Usage: "send `N` GET requests to the probe path after healthy, before traffic moves", Category: "Health"},
		&ucli.DurationFlag{Name: "drain", Usage: "longest wait for requests in flight on the old container after traffic moved", DefaultText: deploy.DefaultSettings().Drain.String(), Category: "Traffic"},
		&ucli.DurationFlag{Name: "stop-timeout", Usage: "time the old container gets to stop before it is killed", DefaultText: "the container's own", Category: "Traffic"},
		&ucli.StringFlag{Name: "nginx-upstream", Usage: "the upstream `FILE` baton owns and rewrites atomically (nginx: upstream web { include FILE; })", Category: "Traffic"},
		&ucli.StringFlag{Name: "nginx-reload", Usage: "`CMD` that reloads nginx on the host, e.g. \"nginx -s reload\"; run without a shell (write sh -c '...' for one); recorded in the state directory for later deploys, never taken from a label", Category: "Traffic", EnvVars: []string{"BATON_NGINX_RELOAD"}},
		&ucli.StringFlag{Name: "nginx-container", Usage: "nginx runs in container `NAME`: baton sends it HUP", Category: "Traffic"},
		&ucli.BoolFlag{Name: "relay", Usage: "put baton's relay between nginx and the app, so a deploy needs no nginx reload", DefaultText: "true with --nginx-upstream", Category: "Traffic"},
		&ucli.IntFlag{Name: "relay-port", Usage: "host port the relay listens on when nginx runs on the host", DefaultText: "a free one", Category: "Traffic"},
		&ucli.StringFlag{Name: "relay-address", Usage: "host `IP` the relay listens on when nginx runs on the host (another machine's nginx reaches it there)", DefaultText: "127.0.0.1", Category: "Traffic"},
		&ucli.BoolFlag{Name: "kernel-path", Usage: "between deploys let the kernel carry nginx's connections for the relay's address straight to the container (iptables DNAT; needs root; nginx on the host, in a container, or on another machine); each deploy moves traffic through the relay as always; recorded for later deploys, never taken from a label", Category: "Traffic"},
		&ucli.StringFlag{Name: "drain-signal", Usage: "send `SIGNAL` (SIGUSR1, SIGHUP, SIGTERM, ...) to the old container when traffic moves, before the drain, so the app can ask its long-lived clients (WebSocket, SSE) to reconnect", Category: "Traffic"},
		&ucli.StringFlag{Name: "pre-switch", Usage: "run `CMD` with docker exec in the healthy new container before traffic moves (migrations, cache warming, a smoke test); a non-zero exit aborts, the old keeps serving; run without a shell (write sh -c '...' for one); recorded for later deploys, never taken from a label", Category: "Health"},
		&ucli.StringFlag{Name: "accept-drift", Usage: "deploy although the new container cannot have these settings of the old one: comma-separated `FIELDS` (" + strings.Join(dockerctl.DriftFields, ", ") + "); recorded for later deploys"},
		&ucli.DurationFlag{Name: "bake", Usage: "keep the old container running, out of rotation, this long after the switch, and revert to it if the new one turns unhealthy, exits or restarts", DefaultText: "no bake", Category: "Bake and canary"},
		&ucli.IntFlag{Name: "bake-max-dial-errors", Usage: "also revert a bake or canary when the relay counts more than `N` failed dials to the new container", DefaultText: "off", Category: "Bake and canary"},
		&ucli.IntFlag{Name: "bake-max-resets", Usage: "also revert a bake or canary when the relay counts more than `N` connections the new container reset", DefaultText: "off", Category: "Bake and canary"},
		&ucli.StringFlag{Name: "canary", Usage: "send `PERCENT[:DURATION]` of new connections to the new container first (relay only); without a duration, wait for baton promote or baton abort; 0 turns it off", DefaultText: "no canary", Category: "Bake and canary"},
	}
}

// explicitSettings returns the setting flags the user actually gave, as the
// strings deploy.ResolveSettings parses.
func explicitSettings(c *ucli.Context) map[string]string {
	out := map[string]string{}
	for _, name := range deploy.SettingNames() {
		if !c.IsSet(name) {
			continue
		}
		switch v := c.Value(name).(type) {
		case time.Duration:
			out[name] = v.String()
		case bool:
			out[name] = boolString(v)
		case int:
			out[name] = itoa(v)
		case string:
			out[name] = v
		}
	}
	return out
}

type deployOptions struct {
	target   string
	image    string
	pull     string
	force    bool
	dryRun   bool
	json     bool
	quiet    bool
	settings map[string]string
	compose  composeOptions
}

func newDeployCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "deploy",
		Usage:     "replace a running container with one from a new image, without dropping a request",
		ArgsUsage: "CONTAINER",
		Description: `Pulls the new image, starts a new container cloned from the old one's configuration,
waits until it is healthy, moves traffic to it, stops the old one gracefully and gives
it the old one's name and published ports. If anything fails before the old container
is stopped, the old one keeps serving and baton says why.

A Swarm service (found by name when no container has it, or with --swarm) gets a
start-first rolling update gated on its tasks' HEALTHCHECK (or one made of --http-probe
and --probe-cmd), rolled back if a new task fails; the update settings come from the
--update-* flags. With -f stack.yml SERVICE, a service of a docker stack deploy stack is
deployed from its stack file, and the stack keeps owning it.

With -f/--compose-file or -p/--project-name the argument is a compose SERVICE: every
replica is replaced, one at a time, as compose would create it now, and compose still owns
it afterwards. --all deploys every service whose image or configuration changed, in
depends_on order.

With several hosts (--context NAME repeated, or --hosts FILE) the container is deployed on
each host in turn; the rollout stops at the first host that fails (later hosts untouched,
earlier ones on the new image, or back on the old with --rollback-on-failure), and nginx
balances across every host's relay meanwhile. The exit code is the worst host's.

Exit codes: 0 deployed or already up to date; 1 failed, the old container still serves;
2 bad input, nothing changed; 3 failed after the old container stopped (service may be down).`,
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "image", Usage: "new image `REF`", DefaultText: "pull again the reference the container runs"},
			&ucli.StringFlag{Name: "pull", Value: "always", Usage: "always, missing or never"},
			&ucli.BoolFlag{Name: "force", Usage: "deploy even if the image did not change"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the plan and change nothing"},
			&ucli.BoolFlag{Name: "json", Usage: "progress events and the result as JSON lines on stdout"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress on stderr"},
			contextFlag(),
			&ucli.StringSliceFlag{Name: "upstream-dir", Usage: "also allow nginx upstream files in `DIR` (besides " + deploy.DefaultUpstreamDir + "); repeatable; a path given with it is recorded for later deploys", Category: "Traffic"},
		}, append(append(append(append(composeFlags(), rolloutFlags()...), deployRolloutFlags()...), settingFlags()...), swarmFlags()...)...),
		Action: func(c *ucli.Context) error {
			opts := deployOptions{
				image: c.String("image"), pull: c.String("pull"),
				force: c.Bool("force"), dryRun: c.Bool("dry-run"), json: c.Bool("json"), quiet: c.Bool("quiet"),
				settings: explicitSettings(c), compose: composeOptionsFrom(c),
			}
			hosts, multi, err := rolloutHosts(c)
			if err != nil {
				return err
			}
			if err := checkDispatchFlags(c, multi, opts.compose.enabled()); err != nil {
				return err
			}
			if multi {
				if opts.compose.enabled() {
					return usageErr("compose services are deployed on one host at a time; leave out --hosts and give one --context")
				}
				if c.NArg() != 1 {
					return usageErr("deploy across hosts takes exactly one CONTAINER, got %d arguments", c.NArg())
				}
				pull, err := deploy.ParsePullPolicy(opts.pull)
				if err != nil {
					return deployErr(err)
				}
				return runRollout(c, hosts, rollout.KindDeploy, deploy.Request{
					Target: c.Args().First(), Image: opts.image, Pull: pull, Force: opts.force, DryRun: opts.dryRun,
					Flags: opts.settings, Trigger: "cli",
				}, opts.json, opts.quiet)
			}
			if opts.compose.enabled() {
				return runComposeDeploy(c, opts)
			}
			if c.NArg() != 1 {
				return usageErr("deploy takes exactly one CONTAINER, got %d arguments (baton deploy [flags] CONTAINER, or -f docker-compose.yml SERVICE)", c.NArg())
			}
			opts.target = c.Args().First()
			return runDeploy(c, opts)
		},
	}
}

// checkDispatchFlags refuses flags of one kind of target (hosts, compose,
// Swarm) given with another, which would otherwise be silently ignored.
func checkDispatchFlags(c *ucli.Context, multi, compose bool) error {
	swarmSet := swarmFlagSet(c)
	switch {
	case swarmSet != "" && multi:
		return usageErr("--%s is for a Swarm service, which its swarm spreads over its nodes; leave out --hosts/the second --context", swarmSet)
	case swarmSet != "" && compose && c.Bool("all"):
		return usageErr("--%s is for a Swarm service; --all deploys a compose project's services", swarmSet)
	case !multi && c.IsSet("down"):
		return usageErr("--down is for a rollout across hosts (--hosts FILE or several --context)")
	case !multi && c.IsSet("rollback-on-failure"):
		return usageErr("--rollback-on-failure is for a rollout across hosts (--hosts FILE or several --context)")
	}
	return nil
}

// swarmFlagSet names a Swarm-only flag given, or "". With -f they are
// checked once it is known whether the file is a stack's.
func swarmFlagSet(c *ucli.Context) string {
	for _, name := range []string{"swarm", "update-parallelism", "update-delay", "update-monitor", "update-failure-action", "probe-cmd"} {
		if c.IsSet(name) {
			return name
		}
	}
	return ""
}

func runDeploy(c *ucli.Context, opts deployOptions) error {
	out := newOutput(c.App.Writer, c.App.ErrWriter, opts.json, opts.quiet)
	pull, err := deploy.ParsePullPolicy(opts.pull)
	if err != nil {
		return deployErr(err)
	}
	if swarmFlagSet(c) != "" {
		if err := checkSwarmValues(c); err != nil {
			return err
		}
	}
	d, eng, err := newDeployer(c, out)
	if err != nil {
		return err
	}
	defer eng.Close()
	if sw, err := swarmTarget(c, eng, opts.target); err != nil {
		return deployErr(err)
	} else if sw {
		return runSwarmDeploy(c, eng, opts, pull, nil)
	}
	if c.IsSet("probe-cmd") {
		return usageErr("--probe-cmd is for a Swarm service, whose tasks run their own health check; a container's --http-probe is sent by baton")
	}
	res, err := d.Deploy(c.Context, deploy.Request{
		Target: opts.target, Image: opts.image, Pull: pull, Force: opts.force, DryRun: opts.dryRun,
		Flags: opts.settings, PullProgress: out.pullProgress(), Trigger: "cli",
	})
	if err == nil || opts.json {
		out.result(res)
	}
	return deployErr(onEngine(eng, err))
}
