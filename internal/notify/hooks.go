package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/redact"
)

// Hook is a --pre-deploy or --post-deploy command. The command line is the
// operator's, split into words the way a shell splits them (quotes and
// backslashes) but never run by a shell: nothing is expanded and no value of
// a deploy (an image name from a webhook payload, an error message) is ever
// spliced into it. The deploy's details reach the command only as
// environment variables.
type Hook struct {
	Name    string // pre-deploy or post-deploy, for messages
	Argv    []string
	Timeout time.Duration // default 2m
}

// ParseHook splits a command line into a Hook.
func ParseHook(name, cmdline string, timeout time.Duration) (*Hook, error) {
	argv, err := SplitWords(cmdline)
	if err != nil {
		return nil, fmt.Errorf("--%s %q: %w", name, cmdline, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("--%s: empty command", name)
	}
	return &Hook{Name: name, Argv: argv, Timeout: timeout}, nil
}

// HookResult is what a hook run did.
type HookResult struct {
	Output string // combined stdout and stderr, at most 64 KiB
}

// Run runs the hook with env added to baton's own environment and waits for
// it. A non-zero exit, a timeout or a command that cannot start is an error.
func (h *Hook) Run(ctx context.Context, env []string) (HookResult, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Argv[0], h.Argv[1:]...)
	// baton's environment without its secrets (the webhook token and
	// secret, the notification URL): a hook gets the deploy's details only.
	cmd.Env = append(redact.Environ(os.Environ()), env...)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so a timeout kills whatever it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	res := HookResult{Output: out.String()}
	switch {
	case err == nil:
		return res, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("%s hook %s: still running after %s, killed", h.Name, h.Argv[0], timeout)
	default:
		return res, fmt.Errorf("%s hook %s: %w%s", h.Name, h.Argv[0], err, outputSuffix(res.Output))
	}
}

func outputSuffix(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	lines := strings.Split(out, "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return " (output: " + strings.Join(lines, " | ") + ")"
}

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}

// HookEnv is the environment a hook gets for a deploy: BATON_PHASE (pre or
// post) and the entry's fields as BATON_* variables. Values are passed as
// they are; a hook must treat them as data.
func HookEnv(phase string, e journal.Entry) []string {
	kv := [][2]string{
		{"BATON_PHASE", phase},
		{"BATON_ID", e.ID},
		{"BATON_REQUEST_IDS", strings.Join(e.Requests, ",")},
		{"BATON_TARGET", e.Target},
		{"BATON_SERVICE", e.Service},
		{"BATON_CONTAINER", e.Container},
		{"BATON_TRIGGER", e.Trigger},
		{"BATON_WHO", e.Who},
		{"BATON_OLD_IMAGE", e.OldImage},
		{"BATON_OLD_IMAGE_ID", e.OldImageID},
		{"BATON_NEW_IMAGE", e.NewImage},
		{"BATON_NEW_IMAGE_ID", e.NewImageID},
	}
	if phase == "post" {
		kv = append(kv,
			[2]string{"BATON_OUTCOME", e.Outcome},
			[2]string{"BATON_EXIT_CODE", strconv.Itoa(e.ExitCode)},
			[2]string{"BATON_ERROR", e.Error},
			[2]string{"BATON_DURATION_SECONDS", strconv.FormatFloat(e.Duration.Seconds(), 'f', 3, 64)},
			[2]string{"BATON_DEPLOY_ID", e.DeployID},
		)
	}
	env := make([]string, 0, len(kv))
	for _, p := range kv {
		// The environment block cannot hold a NUL; drop it rather than fail.
		env = append(env, p[0]+"="+strings.ReplaceAll(p[1], "\x00", ""))
	}
	return env
}

// SplitWords splits s into words like a POSIX shell does for a simple
// command, without any expansion: whitespace separates words, single quotes
// keep everything literal, double quotes keep everything but \" and \\, and a
// backslash outside quotes escapes the next character. Shell operators
// (; | & < > $ `) are not special: they are ordinary characters of a word.
func SplitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	const (
		plain = iota
		single
		double
	)
	mode := plain
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch mode {
		case single:
			if r == '\'' {
				mode = plain
			} else {
				cur.WriteRune(r)
			}
		case double:
			switch {
			case r == '"':
				mode = plain
			case r == '\\' && i+1 < len(rs) && (rs[i+1] == '"' || rs[i+1] == '\\'):
				i++
				cur.WriteRune(rs[i])
			default:
				cur.WriteRune(r)
			}
		default:
			switch {
			case unicode.IsSpace(r):
				if inWord {
					words = append(words, cur.String())
					cur.Reset()
					inWord = false
				}
			case r == '\'':
				mode, inWord = single, true
			case r == '"':
				mode, inWord = double, true
			case r == '\\':
				if i+1 >= len(rs) {
					return nil, errors.New("ends with a lone backslash")
				}
				i++
				cur.WriteRune(rs[i])
				inWord = true
			default:
				cur.WriteRune(r)
				inWord = true
			}
		}
	}
	if mode != plain {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
