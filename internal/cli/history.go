package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/internal/journal"
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
of that service converges it and says so (recovered).`,
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print a JSON array"},
			&ucli.IntFlag{Name: "limit", Value: 20, Usage: "show the last `N` deploys (0: all)"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 1 {
				return usageErr("history takes at most one CONTAINER, got %d", c.NArg())
			}
			if c.Int("limit") < 0 {
				return usageErr("--limit must be 0 or more")
			}
			return runHistory(c, c.Args().First(), c.Bool("json"), c.Int("limit"))
		},
	}
}

func runHistory(c *ucli.Context, target string, asJSON bool, limit int) error {
	st, err := state.Open(c.String("state-dir"))
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
		img := orDash(e.NewImage)
		if e.OldImage != "" && e.NewImage != "" && e.OldImage != e.NewImage {
			img = e.OldImage + " -> " + e.NewImage
		}
		if e.NewImageID != "" && e.NewImageID != e.OldImageID && e.Outcome == "deployed" {
			img += " (" + short(e.NewImageID) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.StartedAt.Local().Format("2006-01-02 15:04:05"), e.Target,
			orDash(e.Trigger), orDash(e.Who), e.Outcome, e.Duration.Round(100*time.Millisecond), img, orDash(clip(e.Error, 120)))
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
