package healthcheck

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinels for errors.Is on what Wait returns.
var (
	// ErrExited: the container stopped running while baton waited: it
	// exited, was OOM-killed, restarted (possibly hidden by a restart
	// policy) or was removed.
	ErrExited = errors.New("container exited")
	// ErrUnhealthy: Docker's HEALTHCHECK reported the container unhealthy.
	ErrUnhealthy = errors.New("container unhealthy")
	// ErrTimeout: the caller's deadline passed before the container was
	// healthy. A cancelled context is reported as context.Canceled instead.
	ErrTimeout = errors.New("health wait timed out")
	// ErrNoHealthcheck: Spec.DockerHealth was set for a container without
	// a HEALTHCHECK, which would otherwise wait until the deadline.
	ErrNoHealthcheck = errors.New("container has no HEALTHCHECK")
)

// Failure says why a container did not become healthy and carries what an
// operator needs to see why. Error gives it on one line; the fields (or
// Detail) give it in full.
type Failure struct {
	Err       error  // ErrExited, ErrUnhealthy or ErrTimeout
	Container string // name, or ID when the name is unknown
	// Reason is the cause in a few words: "exited with code 1",
	// "restarted 2 times", "docker health unhealthy", ...
	Reason  string
	Elapsed time.Duration
	// ExitCode is the container's exit code; meaningful only when
	// HasExitCode (a container that was removed or restarted may not have
	// one to report).
	ExitCode     int
	HasExitCode  bool
	OOMKilled    bool
	DockerHealth string // last Docker health status seen, "" when none
	HealthOutput string // output of the last Docker health check run
	ProbeError   string // last error of a Probe that had not passed
	Logs         []string
	// DetailsErr says why some of the fields above could not be filled
	// (the container is gone, the daemon did not answer, ...).
	DetailsErr error

	// stopped: the last inspect found the container exited or dead (not
	// restarting), so an empty log tail may only mean the daemon's copier
	// has not caught up yet.
	stopped bool
}

func (f *Failure) Unwrap() error { return f.Err }

// Error is one line, for a log record or a terminal status line.
func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s after %s", f.subject(), f.Reason, roundDuration(f.Elapsed))
	if f.HealthOutput != "" {
		fmt.Fprintf(&b, "; last health check: %s", oneLine(f.HealthOutput))
	}
	if f.ProbeError != "" {
		fmt.Fprintf(&b, "; last probe error: %s", oneLine(f.ProbeError))
	}
	if len(f.Logs) > 0 {
		lines := make([]string, 0, len(f.Logs))
		for _, l := range f.Logs {
			if l = printable(strings.TrimSpace(l), false); l != "" {
				lines = append(lines, l)
			}
		}
		fmt.Fprintf(&b, "; logs: %s", strings.Join(lines, " | "))
	}
	return b.String()
}

// Detail is the multi-line form: the Error line's content with the health
// output and the log tail kept as they were written.
func (f *Failure) Detail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s after %s\n", f.subject(), f.Reason, roundDuration(f.Elapsed))
	if f.HasExitCode {
		fmt.Fprintf(&b, "exit code: %d\n", f.ExitCode)
	}
	if f.DockerHealth != "" {
		fmt.Fprintf(&b, "docker health: %s\n", f.DockerHealth)
	}
	if f.HealthOutput != "" {
		fmt.Fprintf(&b, "last health check output:\n  %s\n", strings.ReplaceAll(printable(strings.TrimSpace(f.HealthOutput), true), "\n", "\n  "))
	}
	if f.ProbeError != "" {
		fmt.Fprintf(&b, "last probe error: %s\n", printable(f.ProbeError, false))
	}
	if len(f.Logs) > 0 {
		b.WriteString("last log lines:\n")
		for _, l := range f.Logs {
			fmt.Fprintf(&b, "  %s\n", printable(l, false))
		}
	}
	if f.DetailsErr != nil {
		fmt.Fprintf(&b, "(details incomplete: %v)\n", f.DetailsErr)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (f *Failure) subject() string {
	if f.Container == "" {
		return "health wait"
	}
	return "container " + f.Container
}

func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// printable escapes the control characters of text a container wrote (its
// log lines, its health check's output, its HTTP answers) as \xNN: the
// image's author chooses that text, and it is printed on the operator's
// terminal, where escape sequences could rewrite what is shown (a failed
// deploy made to look like a success) or drive the terminal. Tabs stay,
// and newlines where keepNewlines.
func printable(s string, keepNewlines bool) string {
	clean := true
	for _, r := range s {
		if isControl(r) && r != '\t' && (r != '\n' || !keepNewlines) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\t' || (r == '\n' && keepNewlines):
			b.WriteRune(r)
		case isControl(r):
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isControl is C0, DEL and C1 (0x80-0x9f, which some terminals take as
// escape sequences too).
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f)
}
