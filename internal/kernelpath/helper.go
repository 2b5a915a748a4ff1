package kernelpath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// The helper is how baton reaches the firewall of an engine's host that is
// another machine (a host of a rollout): a container of baton's own image
// in that host's network and PID namespaces, holding the host's root
// read-only at HelperRoot, in which baton runs "baton kernel-helper VERB"
// through docker exec. Each verb is one Table method run there against the
// host's own iptables (chrooted into HelperRoot, so the binary and backend
// are the ones Docker on that host uses), or one read of a container's
// connection table. Both sides of that protocol are in this file: the
// command (the helper's side) and Helper (baton's side).

// HelperRoot is where the helper container mounts the host's root.
const HelperRoot = "/host"

// HelperCommandName is the hidden command the helper runs.
const HelperCommandName = "kernel-helper"

// ChrootRunner runs the iptables of the host whose root is mounted at Root,
// chrooted there, so its libraries, its backend (legacy or nft) and its
// xtables lock are that host's.
type ChrootRunner struct{ Root string }

func (c ChrootRunner) Run(ctx context.Context, args ...string) ([]byte, error) {
	bin := ""
	for _, dir := range filepath.SplitList(fixedPath) {
		// Lstat: the binary is often a symlink (Debian's alternatives)
		// whose absolute target only resolves inside the chroot.
		if _, err := os.Lstat(filepath.Join(c.Root, dir, "iptables")); err == nil {
			bin = filepath.Join(dir, "iptables")
			break
		}
	}
	if bin == "" {
		return nil, fmt.Errorf("kernel path: iptables not found in %s of the engine's host (install iptables there)", fixedPath)
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"-w", "5"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: c.Root}
	cmd.Dir = "/"
	return runIptables(cmd, args)
}

// Exit codes of the helper's verbs: 0 done, exitRefused a route refused
// before any change (its message says why), exitUnreadable a connection
// table that could not be read (the container is gone), anything else a
// failure.
const (
	exitRefused    = 3
	exitUnreadable = 4
)

// HelperCommand is the helper's side: "baton kernel-helper VERB".
func HelperCommand() *cli.Command {
	table := func() *Table { return NewTable(ChrootRunner{Root: HelperRoot}) }
	service := &cli.StringFlag{Name: "service", Required: true}
	fail := func(err error) error {
		code := 1
		var v *validateError
		if errors.As(err, &v) {
			code = exitRefused
		}
		return cli.Exit(firstLineOf(err.Error()), code)
	}
	return &cli.Command{
		Name:   HelperCommandName,
		Usage:  "the kernel path's helper on an engine's host (internal)",
		Hidden: true,
		Subcommands: []*cli.Command{
			{
				Name: "wait", Usage: "hold the helper container open until stopped",
				Action: func(c *cli.Context) error {
					<-c.Context.Done()
					return nil
				},
			},
			{
				Name: "route",
				Flags: []cli.Flag{service,
					&cli.StringFlag{Name: "listen", Required: true}, &cli.StringFlag{Name: "target", Required: true},
					&cli.StringFlag{Name: "source", Required: true}, &cli.StringFlag{Name: "bridge", Required: true}},
				Action: func(c *cli.Context) error {
					r, err := parseRoute(c.String("service"), c.String("listen"), c.String("target"), c.String("source"), c.String("bridge"))
					if err == nil && !r.Forwarded() {
						err = &validateError{fmt.Errorf("kernel path: the helper sets forwarded routes only, not %s", r.Listen)}
					}
					if err == nil {
						err = table().Route(c.Context, r)
					}
					if err != nil {
						return fail(err)
					}
					return nil
				},
			},
			{
				Name: "bypass", Flags: []cli.Flag{service},
				Action: func(c *cli.Context) error {
					if err := table().Bypass(c.Context, c.String("service")); err != nil {
						return fail(err)
					}
					return nil
				},
			},
			{
				Name: "remove", Flags: []cli.Flag{service},
				Action: func(c *cli.Context) error {
					t := table()
					if err := t.Remove(c.Context, c.String("service")); err != nil {
						return fail(err)
					}
					// Whether anything of baton's is left in this host's
					// firewall: the helper goes with the last route.
					empty, err := t.Empty(c.Context)
					if err != nil {
						return fail(err)
					}
					fmt.Fprintln(c.App.Writer, strconv.FormatBool(empty))
					return nil
				},
			},
			{
				Name: "target", Flags: []cli.Flag{service},
				Action: func(c *cli.Context) error {
					s, err := table().Target(c.Context, c.String("service"))
					if err != nil {
						return fail(err)
					}
					fmt.Fprintln(c.App.Writer, s)
					return nil
				},
			},
			{
				Name: "has", Flags: []cli.Flag{service},
				Action: func(c *cli.Context) error {
					has, err := table().Has(c.Context, c.String("service"))
					if err != nil {
						return fail(err)
					}
					fmt.Fprintln(c.App.Writer, strconv.FormatBool(has))
					return nil
				},
			},
			{
				Name: "connections", Flags: []cli.Flag{service},
				Action: func(c *cli.Context) error {
					n, err := table().Connections(c.Context, c.String("service"))
					if err != nil {
						return fail(err)
					}
					fmt.Fprintln(c.App.Writer, n)
					return nil
				},
			},
			{
				Name:  "established",
				Flags: []cli.Flag{&cli.IntFlag{Name: "pid", Required: true, DefaultText: "required"}, &cli.IntFlag{Name: "port", Required: true, DefaultText: "required"}, &cli.StringFlag{Name: "from", Required: true}},
				Action: func(c *cli.Context) error {
					from, err := netip.ParseAddr(c.String("from"))
					if err != nil {
						return cli.Exit("kernel path: --from: "+err.Error(), exitRefused)
					}
					n, ok := EstablishedFrom("/proc", c.Int("pid"), c.Int("port"), from)
					if !ok {
						return cli.Exit(fmt.Sprintf("kernel path: the connection table of process %d cannot be read", c.Int("pid")), exitUnreadable)
					}
					fmt.Fprintln(c.App.Writer, n)
					return nil
				},
			},
		},
	}
}

// validateError is a route refused before any change.
type validateError struct{ err error }

func (e *validateError) Error() string { return e.err.Error() }
func (e *validateError) Unwrap() error { return e.err }

func parseRoute(service, listen, target, source, bridge string) (Route, error) {
	var r Route
	var err error
	r.Service, r.Bridge = service, bridge
	if r.Listen, err = netip.ParseAddrPort(listen); err != nil {
		return r, &validateError{fmt.Errorf("kernel path: listen address %q: %w", listen, err)}
	}
	if r.Target, err = netip.ParseAddrPort(target); err != nil {
		return r, &validateError{fmt.Errorf("kernel path: target %q: %w", target, err)}
	}
	if r.Source, err = netip.ParseAddr(source); err != nil {
		return r, &validateError{fmt.Errorf("kernel path: source address %q: %w", source, err)}
	}
	if err := r.Validate(); err != nil {
		return r, &validateError{err}
	}
	return r, nil
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// HelperExec runs argv in the helper container and returns what it printed
// and its exit code; err only when it could not be run.
type HelperExec func(ctx context.Context, argv []string) (stdout, stderr string, code int, err error)

// Helper is baton's side: the Table of an engine's host reached through
// the helper container, verb by verb.
type Helper struct {
	// Binary is the baton binary in the helper's image.
	Binary string
	Exec   HelperExec
}

func (h Helper) run(ctx context.Context, verb string, args ...string) (string, error) {
	argv := append([]string{h.Binary, HelperCommandName, verb}, args...)
	out, errOut, code, err := h.Exec(ctx, argv)
	if err != nil {
		return "", fmt.Errorf("kernel path: the helper on the engine's host: %w", err)
	}
	if code != 0 {
		msg := strings.TrimSpace(errOut)
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg == "" {
			msg = fmt.Sprintf("exit status %d", code)
		}
		e := &HelperError{Verb: verb, Code: code, Msg: msg}
		return "", e
	}
	return strings.TrimSpace(out), nil
}

// HelperError is a verb the helper ran and that failed.
type HelperError struct {
	Verb string
	Code int
	Msg  string
}

func (e *HelperError) Error() string {
	return fmt.Sprintf("kernel path on the engine's host (%s): %s", e.Verb, e.Msg)
}

// Route is Table.Route on the engine's host; only forwarded routes.
func (h Helper) Route(ctx context.Context, r Route) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if !r.Forwarded() {
		return fmt.Errorf("kernel path: an engine's host on another machine takes forwarded routes only, not %s", r.Listen)
	}
	_, err := h.run(ctx, "route", "--service", r.Service, "--listen", r.Listen.String(), "--target", r.Target.String(), "--source", r.Source.String(), "--bridge", r.Bridge)
	return err
}

// Bypass is Table.Bypass on the engine's host.
func (h Helper) Bypass(ctx context.Context, service string) error {
	if err := checkService(service); err != nil {
		return err
	}
	_, err := h.run(ctx, "bypass", "--service", service)
	return err
}

// Remove is Table.Remove on the engine's host; empty says nothing of
// baton's is left in its firewall.
func (h Helper) Remove(ctx context.Context, service string) (empty bool, err error) {
	if err := checkService(service); err != nil {
		return false, err
	}
	out, err := h.run(ctx, "remove", "--service", service)
	return out == "true", err
}

// Target is Table.Target on the engine's host.
func (h Helper) Target(ctx context.Context, service string) (string, error) {
	if err := checkService(service); err != nil {
		return "", err
	}
	return h.run(ctx, "target", "--service", service)
}

// Has is Table.Has on the engine's host.
func (h Helper) Has(ctx context.Context, service string) (bool, error) {
	if err := checkService(service); err != nil {
		return false, err
	}
	out, err := h.run(ctx, "has", "--service", service)
	return out == "true", err
}

// Connections is Table.Connections on the engine's host.
func (h Helper) Connections(ctx context.Context, service string) (uint64, error) {
	if err := checkService(service); err != nil {
		return 0, err
	}
	out, err := h.run(ctx, "connections", "--service", service)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(out, 10, 64)
}

// Established is EstablishedFrom on the engine's host (its PIDs). ok is
// false, with no error, when the helper says the table cannot be read
// (the container is gone); an error is a look that failed (the exec, the
// helper, the link to the engine) and says nothing about the container.
func (h Helper) Established(ctx context.Context, pid, port int, from netip.Addr) (n int, ok bool, err error) {
	out, err := h.run(ctx, "established", "--pid", strconv.Itoa(pid), "--port", strconv.Itoa(port), "--from", from.String())
	var he *HelperError
	if errors.As(err, &he) && he.Code == exitUnreadable {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if n, err = strconv.Atoi(out); err != nil {
		return 0, false, fmt.Errorf("kernel path on the engine's host (established): %q is not a count", out)
	}
	return n, true, nil
}
