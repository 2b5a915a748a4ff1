package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/rollout"
	"github.com/baton-sh/baton/internal/state"
)

func newHistoryCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "history",
		Usage:     "list past deploys (CLI, rollback, watch, webhook), oldest first",
		ArgsUsage: "[CONTAINER]",
		Description: `Every deploy any baton on this host ran is in the journal in the state directory
(journal.jsonl): when, what started it and who, old and new image, outcome, duration
and error. A deploy that was killed half-way has no line of its own; the next deploy
of that service converges it and says so (recovered).

Each engine has its own journal (the default engine's in the state directory itself,
another's under engines/): --context NAME reads that engine's. With several hosts
(--context repeated, or --hosts FILE) every host's entries are shown, oldest first,
each labelled with its host.`,
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print a JSON array"},
			&ucli.IntFlag{Name: "limit", Value: 20, Usage: "show the last `N` deploys (0: all)"},
			contextFlag(),
			&ucli.StringFlag{Name: "hosts", Usage: "show the deploys of every host listed in `FILE` (as for deploy --hosts), each labelled with its host", Category: "Hosts"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 1 {
				return usageErr("history takes at most one CONTAINER, got %d", c.NArg())
			}
			if c.Int("limit") < 0 {
				return usageErr("--limit must be 0 or more")
			}
			hosts, multi, err := rolloutHosts(c)
			if err != nil {
				return err
			}
			if multi {
				return runRolloutHistory(c, hosts, c.Args().First(), c.Bool("json"), c.Int("limit"))
			}
			return runHistory(c, c.Args().First(), c.Bool("json"), c.Int("limit"))
		},
	}
}

func runHistory(c *ucli.Context, target string, asJSON bool, limit int) error {
	// The engine's journal: history needs no connection to it.
	ep, err := resolveEngine(c)
	if err != nil {
		return err
	}
	st, err := state.Open(engineStateDir(c, ep.Host))
	if err != nil {
		return fmt.Errorf("%w (set --state-dir or BATON_STATE_DIR)", err)
	}
	entries, skipped, err := journal.Open(st.Path()).Read(journal.Filter{Target: target, Limit: limit})
	if err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(c.App.ErrWriter, "warning: %d damaged line(s) in the journal were skipped\n", skipped)
	}
	if asJSON {
		if entries == nil {
			entries = []journal.Entry{}
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		if target != "" {
			fmt.Fprintf(c.App.Writer, "no deploys of %s in the journal\n", target)
		} else {
			fmt.Fprintln(c.App.Writer, "no deploys in the journal yet")
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tTARGET\tTRIGGER\tWHO\tRESULT\tTOOK\tIMAGE\tERROR")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.StartedAt.Local().Format("2006-01-02 15:04:05"), e.Target,
			orDash(e.Trigger), orDash(e.Who), e.Outcome, e.Duration.Round(100*time.Millisecond), historyImage(e), orDash(clip(e.Error, 120)))
	}
	return tw.Flush()
}

// clip shortens s to n characters for a table cell.
func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// hostEntry is a journal entry of one host of a rollout. host names the
// rollout's host (as in a rollout's result); the entry's own host field,
// the machine baton ran on, is ran_on here.
type hostEntry struct {
	Host  string `json:"host"`
	RanOn string `json:"ran_on,omitempty"`
	journal.Entry
}

// runRolloutHistory shows the journal entries of every host, merged oldest
// first, each labelled with its host. An engine need not answer: its
// journal is here, in its state directory.
func runRolloutHistory(c *ucli.Context, hosts []rollout.Host, target string, asJSON bool, limit int) error {
	if err := checkContexts(hosts); err != nil {
		return err
	}
	all := []hostEntry{}
	for _, h := range hosts {
		engineHost := h.DockerHost
		if engineHost == "" {
			ep, err := dockerctl.ResolveEndpoint(h.Name)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			engineHost = ep.Host
		}
		st, err := state.Open(engineStateDir(c, engineHost))
		if err != nil {
			return fmt.Errorf("host %s: %w (set --state-dir or BATON_STATE_DIR)", h.Name, err)
		}
		entries, skipped, err := journal.Open(st.Path()).Read(journal.Filter{Target: target, Limit: limit})
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		if skipped > 0 {
			fmt.Fprintf(c.App.ErrWriter, "warning: host %s: %d damaged line(s) in the journal were skipped\n", h.Name, skipped)
		}
		for _, e := range entries {
			all = append(all, hostEntry{Host: h.Name, RanOn: e.Host, Entry: e})
		}
	}
	all = mergeHostEntries(all, limit)
	if asJSON {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(all)
	}
	if len(all) == 0 {
		what := "deploys"
		if target != "" {
			what += " of " + target
		}
		fmt.Fprintf(c.App.Writer, "no %s in the journals of %d hosts\n", what, len(hosts))
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tHOST\tTARGET\tTRIGGER\tWHO\tRESULT\tTOOK\tIMAGE\tERROR")
	for _, he := range all {
		e := he.Entry
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.StartedAt.Local().Format("2006-01-02 15:04:05"), he.Host, e.Target,
			orDash(e.Trigger), orDash(e.Who), e.Outcome, e.Duration.Round(100*time.Millisecond), historyImage(e), orDash(clip(e.Error, 120)))
	}
	return tw.Flush()
}

// mergeHostEntries orders every host's entries by start time (a host's
// own order breaks ties) and keeps the last limit (0: all).
func mergeHostEntries(all []hostEntry, limit int) []hostEntry {
	sort.SliceStable(all, func(i, j int) bool { return all[i].StartedAt.Before(all[j].StartedAt) })
	if limit > 0 && len(all) > limit {
		all = all[len(all)-limit:]
	}
	return all
}

// historyImage is a journal entry's IMAGE cell.
func historyImage(e journal.Entry) string {
	img := orDash(e.NewImage)
	if e.OldImage != "" && e.NewImage != "" && e.OldImage != e.NewImage {
		img = e.OldImage + " -> " + e.NewImage
	}
	if e.NewImageID != "" && e.NewImageID != e.OldImageID && e.Outcome == "deployed" {
		img += " (" + short(e.NewImageID) + ")"
	}
	return img
}
