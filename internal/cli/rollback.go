package cli

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/rollout"
)

func newRollbackCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "rollback",
		Usage:     "redeploy the image a container ran before baton's last deploy, the same zero-downtime way",
		ArgsUsage: "CONTAINER",
		Description: `Uses the exact previous image when it is still on this host, else pulls its
reference again (and refuses if that now names another image). The settings recorded
on the container (probes, nginx, relay) apply, and any flag given overrides them.
Exit codes as for deploy.`,
		Flags: append([]ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "progress events and the result as JSON lines on stdout"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress on stderr"},
			contextFlag(),
			&ucli.BoolFlag{Name: "swarm", Usage: "the target is a Swarm service: roll it back to its previous spec", Category: "Swarm"},
		}, append(rolloutFlags(), settingFlags()...)...),
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return usageErr("rollback takes exactly one CONTAINER, got %d arguments", c.NArg())
			}
			hosts, multi, err := rolloutHosts(c)
			if err != nil {
				return err
			}
			if multi {
				return runRollout(c, hosts, rollout.KindRollback, deploy.Request{Target: c.Args().First(), Flags: explicitSettings(c), Trigger: "cli"}, c.Bool("json"), c.Bool("quiet"))
			}
			return runRollback(c, c.Args().First(), c.Bool("json"), c.Bool("quiet"), explicitSettings(c))
		},
	}
}

func runRollback(c *ucli.Context, target string, asJSON, quiet bool, settings map[string]string) error {
	out := newOutput(c.App.Writer, c.App.ErrWriter, asJSON, quiet)
	d, eng, err := newDeployer(c, out)
	if err != nil {
		return err
	}
	defer eng.Close()
	if sw, err := swarmTarget(c, eng, target); err != nil {
		return deployErr(err)
	} else if sw {
		return runSwarmRollback(c, eng, target, asJSON, quiet)
	}
	res, err := d.Rollback(c.Context, deploy.Request{Target: target, Flags: settings, PullProgress: out.pullProgress()})
	if err == nil || asJSON {
		out.result(res)
	}
	return deployErr(onEngine(eng, err))
}
