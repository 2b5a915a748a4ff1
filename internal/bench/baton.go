package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/baton-sh/baton/internal/testenv"
)

// Baton runs the baton binary with a state directory of its own, as the
// e2e tests do, so runs never see each other's deploy records.
type Baton struct {
	Bin      string
	StateDir string
}

// NewBaton builds ./cmd/baton (once per process) and gives it a state
// directory removed with t.
func NewBaton(t testenv.TB) *Baton {
	t.Helper()
	return &Baton{Bin: testenv.BuildBinary(t, "./cmd/baton"), StateDir: t.TempDir()}
}

// Event is one progress event of `baton deploy --json`.
type Event struct {
	Time     time.Time `json:"time"` // baton's clock: the same host's
	Phase    string    `json:"phase"`
	Message  string    `json:"message"`
	Warning  bool      `json:"warning,omitempty"`
	Received time.Time `json:"-"` // when the line was read
}

// Outcome is the result line of `baton deploy --json`.
type Outcome struct {
	Outcome  string        `json:"outcome"`
	Traffic  string        `json:"traffic"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
	NewImage string        `json:"new_image,omitempty"`
	Phases   []PhaseTime   `json:"phases,omitempty"`
}

// PhaseTime is how long one phase of a deploy took, as baton reports it.
type PhaseTime struct {
	Phase    string        `json:"phase"`
	Duration time.Duration `json:"duration_ns"`
}

// DeployRun is one `baton deploy` command.
type DeployRun struct {
	Args       []string
	Start, End time.Time // wall time of the command
	ExitCode   int
	Events     []Event  // --json only
	Result     *Outcome // --json: the result line; plain: parsed from the "deployed" line
	Stdout     string
	Stderr     string // --json only (plain runs stream it)
}

// Took returns the command's wall time.
func (r *DeployRun) Took() time.Duration { return r.End.Sub(r.Start) }

// EventAt returns when the first event of phase happened.
func (r *DeployRun) EventAt(phase string) (time.Time, bool) {
	for _, e := range r.Events {
		if e.Phase == phase {
			if e.Time.IsZero() {
				return e.Received, true
			}
			return e.Time, true
		}
	}
	return time.Time{}, false
}

// Err describes a run that did not exit 0, with what baton said; nil
// otherwise.
func (r *DeployRun) Err() error {
	if r.ExitCode == 0 {
		return nil
	}
	why := lastLines(r.Stderr, 5)
	if r.Result != nil && r.Result.Error != "" {
		why = r.Result.Error
	}
	return fmt.Errorf("baton %s exited %d: %s", strings.Join(r.Args, " "), r.ExitCode, why)
}

// Deploy runs `baton deploy --json args...` and collects its events and
// result. An error means the command could not run; a non-zero exit code is
// in the DeployRun (see Err).
func (b *Baton) Deploy(ctx context.Context, args ...string) (*DeployRun, error) {
	args = append([]string{"deploy", "--json"}, args...)
	cmd, cmdCtx, cancel := b.command(ctx, args)
	defer cancel()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("baton deploy: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	run := &DeployRun{Args: args, Start: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("baton deploy: %w", err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		now := time.Now()
		line := sc.Bytes()
		out.Write(line)
		out.WriteByte('\n')
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(line, &head) != nil {
			continue
		}
		switch head.Type {
		case "event":
			var e Event
			if err := json.Unmarshal(line, &e); err == nil {
				e.Received = now
				run.Events = append(run.Events, e)
			}
		case "result":
			var res Outcome
			if err := json.Unmarshal(line, &res); err == nil {
				run.Result = &res
			}
		}
	}
	scanErr := sc.Err()
	err = cmd.Wait()
	run.End = time.Now()
	run.Stdout, run.Stderr = out.String(), stderr.String()
	return run, finish(cmdCtx, run, err, scanErr)
}

// deployedLine is the line plain `baton deploy` prints on stdout on success.
var deployedLine = regexp.MustCompile(`^deployed \S+: .* in (\S+), traffic: (\S+)$`)

// DeployStream runs plain `baton deploy args...` with its progress (stderr)
// and result (stdout) going to w as they come, and parses the result line.
func (b *Baton) DeployStream(ctx context.Context, w io.Writer, args ...string) (*DeployRun, error) {
	args = append([]string{"deploy"}, args...)
	cmd, cmdCtx, cancel := b.command(ctx, args)
	defer cancel()
	var stdout bytes.Buffer
	lw := &lockedWriter{w: w}
	cmd.Stdout = io.MultiWriter(lw, &stdout)
	cmd.Stderr = lw
	if f, ok := w.(*os.File); ok {
		// The file itself, so baton sees a terminal and draws its progress
		// in place.
		cmd.Stderr = f
	}
	run := &DeployRun{Args: args, Start: time.Now()}
	err := cmd.Run()
	run.End = time.Now()
	run.Stdout = stdout.String()
	for _, line := range strings.Split(strings.TrimSpace(run.Stdout), "\n") {
		if m := deployedLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			if d, perr := time.ParseDuration(m[1]); perr == nil {
				run.Result = &Outcome{Outcome: "deployed", Duration: d, Traffic: m[2]}
			}
		}
	}
	return run, finish(cmdCtx, run, err, nil)
}

// command prepares a baton command bounded by commandTimeout. On a cancel,
// baton gets SIGINT so it can roll back its deploy, and later a kill.
func (b *Baton) command(ctx context.Context, args []string) (*exec.Cmd, context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	cmd := exec.CommandContext(ctx, b.Bin, args...)
	// The benchmark's upstream files live in a temporary directory.
	cmd.Env = append(os.Environ(), "BATON_STATE_DIR="+b.StateDir, "BATON_UPSTREAM_DIRS="+os.TempDir())
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	return cmd, ctx, cancel
}

// finish turns the command's error into the run's exit code, or into an
// error when baton did not run to its end by itself. ctx is the command's.
func finish(ctx context.Context, run *DeployRun, waitErr, scanErr error) error {
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &ee) && ee.Exited():
		run.ExitCode = ee.ExitCode()
	default:
		return fmt.Errorf("baton %s: %w", strings.Join(run.Args, " "), waitErr)
	}
	if ctx.Err() != nil {
		// Exited by itself, but because it was asked to stop.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("baton %s: still running after %s, interrupted", strings.Join(run.Args, " "), commandTimeout)
		}
		return fmt.Errorf("baton %s: interrupted: %w", strings.Join(run.Args, " "), ctx.Err())
	}
	if scanErr != nil {
		return fmt.Errorf("baton %s: reading its output: %w", strings.Join(run.Args, " "), scanErr)
	}
	return nil
}

// lockedWriter serialises the two streams of a command written to one place.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
