package kernelpath

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// Baton's side of the helper: each verb is one exec of the helper command
// with flags built from checked values; a loopback route (which needs
// route_localnet, which the helper does not touch) and a bad service name
// never reach the helper; a failed verb's error is its last stderr line.
func TestHelperClient(t *testing.T) {
	var calls [][]string
	reply := struct {
		out, errOut string
		code        int
	}{}
	h := Helper{Binary: "/baton", Exec: func(_ context.Context, argv []string) (string, string, int, error) {
		calls = append(calls, argv)
		return reply.out, reply.errOut, reply.code, nil
	}}
	ctx := context.Background()
	if err := h.Route(ctx, validRoute()); err == nil || len(calls) != 0 {
		t.Fatalf("loopback route: %v, %d execs; want refused before any exec", err, len(calls))
	}
	if _, err := h.Has(ctx, "web --x"); err == nil || len(calls) != 0 {
		t.Fatalf("bad service: %v, %d execs; want refused before any exec", err, len(calls))
	}
	if err := h.Route(ctx, forwardedRoute()); err != nil {
		t.Fatal(err)
	}
	want := []string{"/baton", HelperCommandName, "route", "--service", "web", "--listen", "10.0.0.11:8081", "--target", "172.18.0.5:8080", "--source", "172.18.0.1", "--bridge", "br-0123456789ab"}
	if len(calls) != 1 || !slices.Equal(calls[0], want) {
		t.Fatalf("route exec %q, want %q", calls, want)
	}
	reply.out = "true\n"
	if has, err := h.Has(ctx, "web"); err != nil || !has {
		t.Fatalf("Has: %v %v", has, err)
	}
	reply.out = "12\n"
	if n, ok, err := h.Established(ctx, 42, 8080, netip.MustParseAddr("172.18.0.1")); !ok || n != 12 || err != nil {
		t.Fatalf("Established: %d %v %v", n, ok, err)
	}
	reply.out, reply.errOut, reply.code = "", "warning\nkernel path: lock /run/baton/kernelpath.lock: busy\n", 1
	err := h.Bypass(ctx, "web")
	var he *HelperError
	if !errors.As(err, &he) || he.Code != 1 || !strings.HasSuffix(err.Error(), "kernel path: lock /run/baton/kernelpath.lock: busy") {
		t.Fatalf("failed verb: %v", err)
	}
	// A failed look is an error, not a container that is gone: a drain
	// that took it for "no connections" would stop the container under
	// them.
	if _, ok, err := h.Established(ctx, 42, 8080, netip.MustParseAddr("172.18.0.1")); ok || err == nil {
		t.Fatalf("Established after the helper failed: ok %v, error %v; want an error", ok, err)
	}
	reply.errOut, reply.code = "kernel path: the connection table of process 42 cannot be read\n", exitUnreadable
	if _, ok, err := h.Established(ctx, 42, 8080, netip.MustParseAddr("172.18.0.1")); ok || err != nil {
		t.Fatalf("Established of a container that is gone: ok %v, error %v; want not ok, no error", ok, err)
	}
}

// The helper's side refuses, before touching any firewall, a route it is
// not for (loopback) or that does not parse, with its own exit code; the
// refusal's positive control is the same command with a forwarded route,
// which gets past every check of its arguments.
func TestHelperCommandRefuses(t *testing.T) {
	run := func(args ...string) (int, string) {
		var stderr bytes.Buffer
		code := 0
		app := &cli.App{Name: "baton", Commands: []*cli.Command{HelperCommand()}, Writer: &bytes.Buffer{}, ErrWriter: &stderr,
			ExitErrHandler: func(_ *cli.Context, err error) {
				var ec cli.ExitCoder
				if errors.As(err, &ec) {
					code = ec.ExitCode()
					stderr.WriteString(err.Error())
				}
			}}
		if err := app.Run(append([]string{"baton", HelperCommandName}, args...)); err != nil && code == 0 {
			code = -1
			stderr.WriteString(err.Error())
		}
		return code, stderr.String()
	}
	route := func(listen string) []string {
		return []string{"route", "--service", "web", "--listen", listen, "--target", "172.18.0.5:8080", "--source", "172.18.0.1", "--bridge", "br-0123456789ab"}
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"loopback", route("127.0.0.1:8081")},
		{"unparsable", route("10.0.0.11")},
		{"bad service", []string{"bypass", "--service", "web;reboot"}},
	} {
		if code, msg := run(tc.args...); code != exitRefused && !(tc.name == "bad service" && code == 1 && strings.Contains(msg, "service name")) {
			t.Errorf("%s: exit %d (%s), want %d", tc.name, code, msg, exitRefused)
		}
	}
	// No such bridge here: the route passes every check of its
	// arguments and fails at this host's interfaces (exit 1, not 3).
	if code, msg := run(route("10.0.0.11:8081")...); code != 1 || !strings.Contains(msg, "br-0123456789ab") {
		t.Errorf("forwarded route: exit %d (%s), want 1 from the check against this host's bridge", code, msg)
	}
}
