package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

var tableHeader = []string{"mode", "deploys", "failed/total", "deploy p50/max", "inside swaps p50/p99/max", "outside swaps p50/p99/max"}

// rows renders each mode as the summary table's cells.
func (r *Report) rows() [][]string {
	var rows [][]string
	for _, m := range r.Modes {
		if m.Requests == 0 && m.Error != "" {
			rows = append(rows, []string{m.Mode, fmt.Sprint(len(m.Deploys)), "error", "-", "-", "-"})
			continue
		}
		failed := fmt.Sprintf("%d/%d", m.Failed, m.Requests)
		if m.Error != "" {
			failed += " (error)"
		}
		rows = append(rows, []string{
			m.Mode,
			fmt.Sprint(len(m.Deploys)),
			failed,
			fmtDuration(m.DeployP50) + "/" + fmtDuration(m.DeployMax),
			m.Inside.String(),
			m.Outside.String(),
		})
	}
	return rows
}

// String renders p50/p99/max.
func (l Latency) String() string {
	if l.Count == 0 {
		return "-"
	}
	return fmtDuration(l.P50) + "/" + fmtDuration(l.P99) + "/" + fmtDuration(l.Max)
}

// WriteTable writes the summary table, one line per mode, aligned.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tableHeader, "\t"))
	for _, row := range r.rows() {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// WriteMarkdown writes the summary table as a Markdown table.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| " + strings.Join(tableHeader, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(tableHeader)) + "\n")
	for _, row := range r.rows() {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteDetails writes, per mode, each deploy's duration, where the failed
// requests fell, their reasons, and the mode's error if it had one.
func (r *Report) WriteDetails(w io.Writer) error {
	var b strings.Builder
	for _, m := range r.Modes {
		fmt.Fprintf(&b, "%s:\n", m.Mode)
		if len(m.Deploys) > 0 {
			ds := make([]string, len(m.Deploys))
			for i, d := range m.Deploys {
				ds[i] = fmtDuration(d.Duration)
				if d.ExitCode != 0 {
					ds[i] += fmt.Sprintf("(exit %d)", d.ExitCode)
				}
			}
			fmt.Fprintf(&b, "  deploy durations: %s\n", strings.Join(ds, " "))
			// Per deploy: until traffic reached the new container / until
			// the command returned (the two deploy-time targets).
			if m.Deploys[0].ToTraffic > 0 {
				tt := make([]string, len(m.Deploys))
				for i, d := range m.Deploys {
					tt[i] = fmtDuration(d.ToTraffic) + "/" + fmtDuration(d.Duration)
				}
				fmt.Fprintf(&b, "  to traffic/returned: %s\n", strings.Join(tt, " "))
			}
			if ph := medianPhases(m.Deploys); ph != "" {
				fmt.Fprintf(&b, "  median time per phase: %s\n", ph)
			}
			if line := engineShare(m); line != "" {
				fmt.Fprintf(&b, "  %s\n", line)
			}
		}
		if m.Requests > 0 {
			fmt.Fprintf(&b, "  requests: %d, failed: %d (%d inside swap windows), inside swaps: %d requests\n",
				m.Requests, m.Failed, m.FailedInside, m.Inside.Count)
		}
		for _, f := range m.Failures {
			fmt.Fprintf(&b, "  %6d x %s\n", f.Count, f.Reason)
		}
		if m.Error != "" {
			fmt.Fprintf(&b, "  ERROR: %s\n", m.Error)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtDuration is short and keeps about two significant digits.
func fmtDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "0"
	case d >= 10*time.Second:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case ms >= 10:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.1fms", ms)
	}
}

// engineShare compares the deploys' median time to traffic and return with
// what the engine alone took for the same container (see EngineFloor): the
// rest is baton's own.
func engineShare(m *ModeReport) string {
	f := m.Engine
	if f == nil || len(m.Deploys) == 0 || m.Deploys[0].ToTraffic == 0 {
		return ""
	}
	var traffic, after []time.Duration
	for _, d := range m.Deploys {
		traffic = append(traffic, d.ToTraffic)
		after = append(after, d.Duration-d.ToTraffic)
	}
	tt, ta := medianOf(traffic), medianOf(after)
	return fmt.Sprintf("engine alone (median of %d, same load, same %d networks, no published port): start %s, start to app ready %s, stop %s; deploys (median): to traffic %s (%s over the engine's start to ready), return %s after traffic (%s over its stop)",
		f.Runs, f.Networks, fmtDuration(f.Start), fmtDuration(f.StartToReady), fmtDuration(f.Stop),
		fmtDuration(tt), signed(tt-f.StartToReady), fmtDuration(ta), signed(ta-f.Stop))
}

// signed is fmtDuration with its sign always written.
func signed(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDuration(-d)
	}
	return "+" + fmtDuration(d)
}

// medianPhases lists, in deploy order, each phase's median duration over the
// deploys: where a deploy's time goes (Docker's create/start/stop, the app's
// warm-up, baton's own switch and drain).
func medianPhases(deploys []Deploy) string {
	var order []string
	byPhase := map[string][]time.Duration{}
	for _, d := range deploys {
		for _, p := range d.Phases {
			if _, ok := byPhase[p.Phase]; !ok {
				order = append(order, p.Phase)
			}
			byPhase[p.Phase] = append(byPhase[p.Phase], p.Duration)
		}
	}
	parts := make([]string, 0, len(order))
	for _, ph := range order {
		ds := byPhase[ph]
		slices.Sort(ds)
		parts = append(parts, ph+" "+fmtDuration(ds[len(ds)/2]))
	}
	return strings.Join(parts, ", ")
}

// sideBySideCells are the columns repeated per engine in the side-by-side
// table, each followed by its value for a mode.
var sideBySideCells = []struct {
	head string
	cell func(row []string) string
}{
	{"failed/total", func(row []string) string { return row[2] }},
	{"deploy p50/max", func(row []string) string { return row[3] }},
	{"inside swaps p50/p99/max", func(row []string) string { return row[4] }},
}

// WriteSideBySide writes one table for several reports (one per engine):
// a legend naming each report's engine, then one line per mode with each
// metric's column for every engine next to each other, so a difference
// between engines is read along a line. A mode one report lacks shows "-".
func WriteSideBySide(w io.Writer, reps []*Report) error {
	if len(reps) == 0 {
		return fmt.Errorf("bench: no report to compare")
	}
	var modes []string
	byMode := make([]map[string][]string, len(reps))
	for i, r := range reps {
		byMode[i] = map[string][]string{}
		for j, row := range r.rows() {
			mode := r.Modes[j].Mode
			byMode[i][mode] = row
			if !slices.Contains(modes, mode) {
				modes = append(modes, mode)
			}
		}
	}
	var b strings.Builder
	for i, r := range reps {
		fmt.Fprintf(&b, "[%d] %s: %d deploys per mode, started %s\n", i+1, r.Engine, r.Deploys, r.Started.UTC().Format(time.RFC3339))
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	head := []string{"mode"}
	for _, c := range sideBySideCells {
		for i := range reps {
			head = append(head, fmt.Sprintf("%s [%d]", c.head, i+1))
		}
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, mode := range modes {
		line := []string{mode}
		for _, c := range sideBySideCells {
			for i := range reps {
				row, ok := byMode[i][mode]
				if !ok {
					line = append(line, "-")
					continue
				}
				line = append(line, c.cell(row))
			}
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}
