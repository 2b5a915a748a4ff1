// Package cli is baton's command line: each command maps its flags to an
// options struct and calls one function.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/redact"
	"github.com/baton-sh/baton/internal/relay"
	"github.com/baton-sh/baton/internal/state"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

// exitError carries an exit code and a message already meant for the user.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Run runs baton with args and returns the process exit code. Errors go to
// stderr as one line.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	argv, err := flagsFirst(app, args)
	if err != nil {
		err = &exitError{code: 2, err: err}
	} else {
		err = app.RunContext(ctx, argv)
	}
	if err == nil {
		return 0
	}
	code := 1
	var ee *exitError
	var ec ucli.ExitCoder // the internal commands' own codes (kernel-helper, relay ctl)
	if errors.As(err, &ee) {
		code = ee.code
	} else if errors.As(err, &ec) && ec.ExitCode() != 0 {
		code = ec.ExitCode()
	} else if isUsageError(err) {
		code = 2
	}
	msg := redact.Text(strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "))
	if msg != "" {
		fmt.Fprintf(stderr, "baton: %s\n", msg)
	}
	return code
}

func newApp(stdout, stderr io.Writer) *ucli.App {
	app := &ucli.App{
		Name:      "baton",
		Usage:     "replace a running Docker container with a new image, with zero failed requests",
		Version:   Version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "state-dir", Usage: "where baton keeps locks and deploy records", Value: state.DefaultPath(), EnvVars: []string{"BATON_STATE_DIR"}},
			&ucli.StringFlag{Name: "config", Usage: "baton's configuration `FILE` (settings for every service, nginx-reload, upstream-dir); must be root-owned and writable by no one else", Value: deploy.DefaultConfigPath, EnvVars: []string{"BATON_CONFIG"}},
			&ucli.StringSliceFlag{Name: "upstream-dir", Usage: "also allow nginx upstream files in `DIR` (besides " + deploy.DefaultUpstreamDir + "); repeatable", EnvVars: []string{"BATON_UPSTREAM_DIRS"}},
			contextFlag(),
			&ucli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (logs go to stderr)", Value: "warn", DefaultText: "warn; info for watch and serve", EnvVars: []string{"BATON_LOG_LEVEL"}},
		},
		Commands: []*ucli.Command{
			newDeployCommand(),
			newRollbackCommand(),
			newCanaryCommand("promote", true),
			newCanaryCommand("abort", false),
			newStatusCommand(),
			newHistoryCommand(),
			newWatchCommand(),
			newServeCommand(),
			relay.Command(),
			kernelpath.HelperCommand(),
		},
		// Usage errors are reported by Run as one line with exit code 2.
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
	}
	// Each command reports its own usage errors the same way; without this
	// urfave/cli prints "Incorrect Usage" and the whole help to stdout.
	var oneLine func(cmds []*ucli.Command)
	oneLine = func(cmds []*ucli.Command) {
		for _, cmd := range cmds {
			if cmd.OnUsageError == nil {
				cmd.OnUsageError = onUsageError
			}
			oneLine(cmd.Subcommands)
		}
	}
	oneLine(app.Commands)
	app.ExitErrHandler = func(*ucli.Context, error) {} // Run prints and exits
	return app
}

func onUsageError(c *ucli.Context, err error, _ bool) error {
	name := "baton"
	if c.Command != nil && c.Command.HelpName != "" {
		name = c.Command.HelpName // the full path: "baton relay ctl set"
	}
	return &exitError{code: 2, err: fmt.Errorf("%v (see %s --help)", err, name)}
}

func isUsageError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "flag provided but not defined") || strings.Contains(s, "Required flag") || strings.Contains(s, "No help topic")
}

// logger makes the slog logger the --log-level flag asks for.
func logger(c *ucli.Context) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lvl}))
}

// deployErr wraps a deploy error with its documented exit code.
func deployErr(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: deploy.ExitCode(err), err: err}
}

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}
