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
			if ph := medianPhases(m.Deploys); ph != "" {
				fmt.Fprintf(&b, "  median time per phase: %s\n", ph)
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
