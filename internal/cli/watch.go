package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/robfig/cron/v3"
	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/unattended"
	"github.com/baton-sh/baton/internal/watch"
)

func newWatchCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "watch",
		Usage: "deploy opted-in containers whenever their image tag moves in the registry",
		Description: `Checks, on a schedule, the registry's digest for the tag each opted-in container runs
(without pulling anything) and, when it moved, deploys it the zero-downtime way with the
settings recorded on the container (baton.* labels). One deploy per container at a time;
every deploy is in baton history.

A container opts in with the label baton.enable=true (or use --all). The label
baton.schedule="CRON" gives it its own schedule; baton.scope=NAME ties it to a
watcher started with --scope NAME. A digest whose deploy failed is tried again only after
--retry-after, or as soon as a newer one is pushed.

--min-age DURATION (or a container's label baton.min-age) is a supply-chain cooldown: a
new digest is deployed only once watch has seen it under the tag for that long, counted
from its first sighting by a watch on this host (kept in the state directory); until then
the log says which digest waits and until when.

On SIGTERM or SIGINT, baton watch stops checking and waits for a running deploy to
finish (up to --shutdown-timeout), then exits 0.`,
		Flags: append([]ucli.Flag{
			&ucli.DurationFlag{Name: "interval", Usage: "check every `DURATION`, starting at once", DefaultText: "5m0s unless --schedule is given"},
			&ucli.StringFlag{Name: "schedule", Usage: "check at the times of cron expression `CRON` (5 fields, 6 with seconds first, or @every 10m, @hourly)"},
			&ucli.DurationFlag{Name: "retry-after", Value: time.Hour, Usage: "wait this long before trying again a digest whose deploy failed"},
			&ucli.DurationFlag{Name: "min-age", DefaultText: "none: a new digest deploys at once", Usage: "cooldown: deploy a new digest only once watch has seen it in the registry for `DURATION` (a container's label baton.min-age overrides it)"},
			&ucli.BoolFlag{Name: "once", Usage: "check every container once, now, wait for the deploys and exit (1 if one failed)"},
		}, unattendedFlags()...),
		Action: func(c *ucli.Context) error {
			if c.NArg() != 0 {
				return usageErr("watch takes no arguments, got %d (label containers %s=true instead)", c.NArg(), unattended.LabelEnable)
			}
			return runWatch(c)
		},
	}
}

func runWatch(c *ucli.Context) error {
	var sched cron.Schedule
	immediate := true
	switch {
	case c.IsSet("interval") && c.IsSet("schedule"):
		return usageErr("--interval and --schedule both given; pick one")
	case c.IsSet("schedule"):
		s, err := watch.ParseSchedule(c.String("schedule"))
		if err != nil {
			return usageErr("--schedule: %v", err)
		}
		sched, immediate = s, false
	default:
		d := 5 * time.Minute
		if c.IsSet("interval") {
			d = c.Duration("interval")
		}
		if d < time.Second {
			return usageErr("--interval %s: must be at least 1s", d)
		}
		sched = watch.Every(d)
	}
	log := longRunningLogger(c)
	u, err := newUnattended(c, log)
	if err != nil {
		return err
	}
	defer u.close()
	w := &watch.Watcher{
		Engine: u.eng,
		Auth: func(ref string) (string, error) {
			return dockerctl.RegistryAuth(ref, io.Discard)
		},
		Queue: u.queue, Select: u.sel, Schedule: sched, Immediate: immediate,
		RetryAfter: c.Duration("retry-after"), Who: "watch@" + hostname(), Metrics: u.metrics, Log: log,
		MinAge: c.Duration("min-age"), Seen: watch.SeenFile{Dir: u.state},
		Services: u.serviceLister(),
	}
	if w.MinAge < 0 {
		return usageErr("--min-age %s: must not be negative", w.MinAge)
	}
	if c.Bool("once") {
		failed, err := w.Once(c.Context)
		if serr := u.shutdown(); err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
		if failed > 0 {
			return &exitError{code: 1, err: fmt.Errorf("%d deploy(s) failed (baton history shows why)", failed)}
		}
		return nil
	}
	log.Info("watching", "all", u.sel.All, "scope", u.sel.Scope, "interval", c.Duration("interval"), "schedule", c.String("schedule"))
	if err := w.Run(c.Context); err != nil {
		return err
	}
	err = u.shutdown()
	return err
}
