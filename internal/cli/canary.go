package cli

import (
	ucli "github.com/urfave/cli/v2"
)

// newCanaryCommand is baton promote or baton abort: the decision a canary
// without a duration waits for.
func newCanaryCommand(name string, promote bool) *ucli.Command {
	usage := "end a canary (deploy --canary PERCENT) by moving all traffic to the new container and finishing the deploy"
	desc := `The new container must still run and be healthy. The rest of the deploy runs as it
would have: the old container drains, bakes with --bake, stops and is replaced.
Exit codes as for deploy; 2 when no canary of CONTAINER waits for a decision.`
	if !promote {
		usage = "end a canary (deploy --canary PERCENT) by sending all traffic back to the old container and removing the new one"
		desc = `Traffic moves back in one relay call; connections on the new container finish there
before it is removed. Exit 0 once the old container serves alone; 2 when no canary of
CONTAINER waits for a decision.`
	}
	return &ucli.Command{
		Name:        name,
		Usage:       usage,
		ArgsUsage:   "CONTAINER",
		Description: desc,
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "progress events and the result as JSON lines on stdout"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress on stderr"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return usageErr("%s takes exactly one CONTAINER, got %d arguments", name, c.NArg())
			}
			out := newOutput(c.App.Writer, c.App.ErrWriter, c.Bool("json"), c.Bool("quiet"))
			d, eng, err := newDeployer(c, out)
			if err != nil {
				return err
			}
			defer eng.Close()
			decide := d.Abort
			if promote {
				decide = d.Promote
			}
			res, err := decide(c.Context, c.Args().First())
			if err == nil || c.Bool("json") {
				out.result(res)
			}
			return deployErr(err)
		},
	}
}
