package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/compose"
	"github.com/baton-sh/baton/internal/deploy"
)

// output renders progress and results the docker CLI way: progress on
// stderr (or nothing with --quiet), the result on stdout, and with --json
// both as JSON lines on stdout.
type output struct {
	stdout, stderr io.Writer
	json           bool
	quiet          bool
	tty            bool

	mu           sync.Mutex
	lastProgress time.Time
	overwriting  bool
}

func newOutput(stdout, stderr io.Writer, asJSON, quiet bool) *output {
	o := &output{stdout: stdout, stderr: stderr, json: asJSON, quiet: quiet}
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			o.tty = true
		}
	}
	return o
}

// Event implements deploy.Reporter.
func (o *output) Event(e deploy.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		o.writeJSON(struct {
			Type string `json:"type"`
			deploy.Event
		}{"event", e})
		return
	}
	if o.quiet && !e.Warning {
		return
	}
	if e.Progress {
		if o.tty {
			fmt.Fprintf(o.stderr, "\r\033[K%s", o.line(e))
			o.overwriting = true
			return
		}
		if time.Since(o.lastProgress) < 5*time.Second {
			return
		}
		o.lastProgress = time.Now()
	}
	if o.overwriting {
		fmt.Fprint(o.stderr, "\r\033[K")
		o.overwriting = false
	}
	fmt.Fprintln(o.stderr, o.line(e))
}

func (o *output) line(e deploy.Event) string {
	prefix := ""
	if e.Warning {
		prefix = "warning: "
	}
	if e.Host != "" {
		prefix = "[" + e.Host + "] " + prefix
	}
	return fmt.Sprintf("%6.1fs %-9s %s%s", e.Elapsed.Seconds(), e.Phase, prefix, e.Message)
}

// note prints a free-standing message the way events are printed.
func (o *output) note(msg string) {
	o.Event(deploy.Event{Time: time.Now(), Phase: "note", Message: msg})
}

// pullProgress is how an image pull shows its progress here.
func (o *output) pullProgress() dockerctl.PullProgress {
	if o.json || o.quiet {
		return dockerctl.PullProgress{}
	}
	if f, ok := o.stderr.(*os.File); ok {
		return dockerctl.TerminalProgress(f)
	}
	return dockerctl.PullProgress{Out: o.stderr}
}

// result prints the outcome of a deploy.
func (o *output) result(res *deploy.Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.overwriting {
		fmt.Fprint(o.stderr, "\r\033[K")
		o.overwriting = false
	}
	if o.json {
		o.writeJSON(struct {
			Type string `json:"type"`
			*deploy.Result
		}{"result", res})
		return
	}
	switch res.Outcome {
	case deploy.OutcomeDeployed:
		fmt.Fprintf(o.stdout, "deployed %s: %s -> %s (%s) in %s, traffic: %s\n", res.Container, res.OldImage, res.NewImage, short(res.NewImageID), res.Duration.Round(100*time.Millisecond), res.Traffic)
	case deploy.OutcomeUpToDate:
		fmt.Fprintf(o.stdout, "%s is up to date: %s (%s)\n", res.Container, res.NewImage, short(res.NewImageID))
	case deploy.OutcomeDryRun:
		o.printPlan(res.Plan)
	case deploy.OutcomeCanary:
		fmt.Fprintf(o.stdout, "canary of %s: %s -> %s (%s) takes a share of new connections; baton promote %s or baton abort %s ends it\n", res.Container, res.OldImage, res.NewImage, short(res.NewImageID), res.Container, res.Container)
	case deploy.OutcomeReverted:
		fmt.Fprintf(o.stdout, "reverted %s: %s serves %s\n", res.Container, res.Container, res.OldImage)
	}
	if res.Recovered != "" {
		fmt.Fprintf(o.stderr, "note: %s\n", res.Recovered)
	}
	for _, n := range res.Notes {
		if res.Outcome != deploy.OutcomeUpToDate || !strings.Contains(n, "nothing to do") {
			fmt.Fprintf(o.stderr, "note: %s\n", n)
		}
	}
}

func (o *output) printPlan(p *deploy.Plan) {
	if p == nil {
		return
	}
	w := o.stdout
	fmt.Fprintf(w, "plan for %s (dry run: nothing was changed)\n", p.Container)
	fmt.Fprintf(w, "  current image: %s (%s)\n", p.CurrentImage, short(p.CurrentID))
	fmt.Fprintf(w, "  new image:     %s\n", p.NewImage)
	fmt.Fprintf(w, "  pull:          %s\n", p.Pull)
	fmt.Fprintf(w, "  traffic:       %s\n", p.Traffic)
	fmt.Fprintf(w, "  settings:      %s\n", p.Settings)
	if !p.UpToDate && len(p.Reasons) > 0 {
		fmt.Fprintf(w, "  why:           %s\n", strings.Join(p.Reasons, "; "))
	}
	if p.Follows != "" {
		fmt.Fprintf(w, "  configuration: %s\n", p.Follows)
	}
	if len(p.IgnoredLabels) > 0 {
		fmt.Fprintf(w, "  ignored image labels (an image's own labels are never settings): %s\n", strings.Join(p.IgnoredLabels, " "))
	}
	if len(p.Leftovers) > 0 {
		fmt.Fprintf(w, "  containers labelled as this service's that no deploy record names (left alone): %s\n", strings.Join(p.Leftovers, ", "))
	}
	for _, d := range p.Drift {
		fmt.Fprintf(w, "  accepted drift: %s %s becomes %s (--accept-drift %s)\n", d.Field, d.Old, d.Instead, d.Field)
	}
	for _, c := range p.Carried {
		fmt.Fprintf(w, "  carried later: %s\n", c)
	}
	fmt.Fprintln(w, "  steps:")
	for i, s := range p.Steps {
		fmt.Fprintf(w, "    %d. %s\n", i+1, s)
	}
	if p.ChangesUnknown {
		fmt.Fprintln(w, "  configuration differences: unknown until the new image is pulled (docker pull it, then run --dry-run again)")
	} else if len(p.Changes) > 0 {
		fmt.Fprintln(w, "  configuration differences (old container -> new):")
		for _, c := range p.Changes {
			fmt.Fprintf(w, "    %s: %s -> %s\n", c.Field, orDash(c.Old), orDash(c.New))
		}
	} else if !p.UpToDate {
		fmt.Fprintln(w, "  configuration differences: none besides the image")
	}
}

func (o *output) writeJSON(v any) {
	enc := json.NewEncoder(o.stdout)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // stdout gone: nothing useful left to do
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// composeResults prints one line per service, and each replica's result.
func (o *output) composeResults(project string, results []compose.ServiceResult) {
	if o.json {
		o.mu.Lock()
		o.writeJSON(struct {
			Type     string                  `json:"type"`
			Project  string                  `json:"project"`
			Services []compose.ServiceResult `json:"services"`
		}{"compose-result", project, results})
		o.mu.Unlock()
		return
	}
	for _, s := range results {
		for _, r := range s.Replicas {
			if r != nil && r.Outcome != deploy.OutcomeFailed {
				o.result(r)
			}
		}
		line := fmt.Sprintf("%s/%s: %s", project, s.Service, s.Outcome)
		if s.Detail != "" && s.Outcome != compose.OutcomeFailed {
			line += " (" + s.Detail + ")"
		}
		fmt.Fprintln(o.stdout, line)
	}
}
