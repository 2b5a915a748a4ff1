package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

var dataPathHeader = []string{"path", "req/s", "x direct", "p50", "x direct", "p99", "x direct", "max",
	"relay CPU-s/1k req", "docker-proxy CPU-s/1k req", "app CPU-s/1k req", "failed/total", "route"}

// direct is the floor the ratios are taken to, nil if it was not measured:
// the direct path, or across hosts the published one.
func (r *DataPathReport) direct() *PathResult {
	for _, p := range r.Paths {
		if (p.Path == PathDirect || p.Path == PathHostsPublished) && p.Error == "" && p.Requests > 0 {
			return p
		}
	}
	return nil
}

// dataPathRows renders each path as the table's cells.
func (r *DataPathReport) dataPathRows() [][]string {
	d := r.direct()
	ratio := func(v, floor float64) string {
		if floor <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v/floor)
	}
	var rows [][]string
	for _, p := range r.Paths {
		if p.Requests == 0 {
			rows = append(rows, []string{p.Path, "error", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", p.Route})
			continue
		}
		var rps, p50, p99 string = "-", "-", "-"
		if d != nil {
			rps = ratio(p.RPS(), d.RPS())
			p50 = ratio(float64(p.Latency.P50), float64(d.Latency.P50))
			p99 = ratio(float64(p.Latency.P99), float64(d.Latency.P99))
		}
		cpu := func(v float64, on bool) string {
			if !on {
				return "-"
			}
			return fmt.Sprintf("%.3f", v)
		}
		failed := fmt.Sprintf("%d/%d", p.Failed, p.Requests)
		if p.Error != "" {
			failed += " (error)"
		}
		rows = append(rows, []string{
			p.Path,
			fmt.Sprintf("%.0f", p.RPS()), rps,
			fmtDuration(p.Latency.P50), p50,
			fmtDuration(p.Latency.P99), p99,
			fmtDuration(p.Latency.Max),
			cpu(p.perThousand(p.RelayCPU), p.RelayCPU > 0),
			cpu(p.perThousand(p.ProxyCPU), p.ProxyCPU > 0 || strings.Contains(p.Route, "docker-proxy")),
			cpu(p.perThousand(p.AppCPU), true),
			failed,
			p.Route,
		})
	}
	return rows
}

// WriteTable writes the data-path table, one line per path, aligned.
func (r *DataPathReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(dataPathHeader, "\t"))
	for _, row := range r.dataPathRows() {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// WriteMarkdown writes the data-path table as a Markdown table.
func (r *DataPathReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| " + strings.Join(dataPathHeader, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(dataPathHeader)) + "\n")
	for _, row := range r.dataPathRows() {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteErrors writes each path's error, if any.
func (r *DataPathReport) WriteErrors(w io.Writer) error {
	var b strings.Builder
	for _, p := range r.Paths {
		if p.Error != "" {
			fmt.Fprintf(&b, "%s: ERROR: %s\n", p.Path, p.Error)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
