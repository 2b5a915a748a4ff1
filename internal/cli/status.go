package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/internal/deploy"
)

func newStatusCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "status",
		Usage:     "show what baton manages: image, health, since when, previous image, where traffic goes",
		ArgsUsage: "[CONTAINER]",
		Description: `Like a deploy, status first converges what an interrupted deploy left behind
(a baton killed mid-deploy), unless a deploy of that service is running.`,
		Flags: append([]ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print a JSON array"},
			contextFlag(),
		}, rolloutFlags()...),
		Action: func(c *ucli.Context) error {
			if c.NArg() > 1 {
				return usageErr("status takes at most one CONTAINER, got %d", c.NArg())
			}
			hosts, multi, err := rolloutHosts(c)
			if err != nil {
				return err
			}
			if multi {
				return runRolloutStatus(c, hosts, c.Args().First(), c.Bool("json"))
			}
			return runStatus(c, c.Args().First(), c.Bool("json"))
		},
	}
}

func runStatus(c *ucli.Context, target string, asJSON bool) error {
	out := newOutput(c.App.Writer, c.App.ErrWriter, false, asJSON)
	d, eng, err := newDeployer(c, out)
	if err != nil {
		return err
	}
	defer eng.Close()
	if target != "" {
		if sw, err := swarmTarget(c, eng, target); err != nil {
			return deployErr(err)
		} else if sw {
			return runSwarmStatus(c, eng, target, asJSON)
		}
	}
	report := func(p deploy.Phase, ctr, format string, args ...any) {
		out.Event(deploy.Event{Time: time.Now(), Phase: p, Container: ctr, Message: fmt.Sprintf(format, args...)})
	}
	list, err := d.Status(c.Context, target, report)
	if err != nil {
		return deployErr(onEngine(eng, err))
	}
	for i := range list {
		list[i].Engine, list[i].EngineHost = eng.Endpoint.Name, eng.Endpoint.Host
	}
	if asJSON {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	fmt.Fprintf(c.App.Writer, "engine: %s\n", eng.Endpoint)
	if len(list) == 0 {
		fmt.Fprintln(c.App.Writer, "baton manages no container yet (baton deploy CONTAINER starts managing one)")
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tIMAGE\tSTATE\tSINCE\tPREVIOUS IMAGE\tTRAFFIC")
	for _, s := range list {
		state := s.State
		if s.Health != "" {
			state += " (" + s.Health + ")"
		}
		if s.DeployRunning {
			state += ", deploy running"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Container, orDash(s.Image), state, since(s.Since), orDash(s.PreviousImage), orDash(s.Traffic))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range list {
		if s.Recovered != "" {
			fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", s.Container, s.Recovered)
		}
		if len(s.IgnoredLabels) > 0 {
			fmt.Fprintf(c.App.ErrWriter, "%s: ignored image labels: %s\n", s.Container, strings.Join(s.IgnoredLabels, " "))
		}
		if s.Problem != "" {
			fmt.Fprintf(c.App.ErrWriter, "%s: problem: %s\n", s.Container, s.Problem)
		}
	}
	return nil
}

func since(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05") + " (" + time.Since(t).Round(time.Second).String() + " ago)"
}
