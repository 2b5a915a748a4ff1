package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// runCLI runs `baton relay args...` and returns stdout and the exit code.
func runCLI(ctx context.Context, args ...string) (stdout string, code int, err error) {
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name:           "baton",
		Commands:       []*cli.Command{Command()},
		Writer:         &out,
		ErrWriter:      &errOut,
		ExitErrHandler: func(*cli.Context, error) {}, // keep os.Exit out of tests
	}
	err = app.RunContext(ctx, append([]string{"baton", "relay"}, args...))
	var ec cli.ExitCoder
	switch {
	case err == nil:
	case errors.As(err, &ec):
		code = ec.ExitCode()
	default:
		code = -1
	}
	return out.String(), code, err
}

// TestCommand runs `relay serve` and drives it with `relay ctl`, checking
// the one line of JSON on stdout and the exit codes baton relies on.
func TestCommand(t *testing.T) {
	dir := socketDir(t)
	sock := filepath.Join(dir, "ctl.sock")
	listen := closedAddr(t)
	// urfave/cli apps share global flags (help), so two cannot run at once
	// in one process: `relay serve` runs in a child, this test binary again.
	serve := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperRelayServe$")
	args, err := json.Marshal([]string{
		"serve", "--listen", listen, "--control", sock, "--state", filepath.Join(dir, "relay.json"),
		"--dial-deadline", "2s", "--shutdown-grace", "5s", "--log-level", "warn",
	})
	if err != nil {
		t.Fatal(err)
	}
	serve.Env = append(os.Environ(), "BATON_RELAY_HELPER_ARGS="+string(args))
	var serveOut bytes.Buffer
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serve.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = serve.Process.Kill()
			<-served
		}
	}()
	// `relay serve` signals readiness only by its socket appearing: a short
	// poll through the client is the only way to wait for it.
	var c *Client
	for range 200 {
		var err error
		if c, err = Dial(t.Context(), sock); err == nil {
			break
		}
		select {
		case err := <-served:
			stopped = true
			t.Fatalf("relay serve ended: %v\n%s", err, serveOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if c == nil {
		t.Fatal("relay serve never opened its control socket")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	ctl := func(args ...string) (map[string]any, int) {
		t.Helper()
		out, code, _ := runCLI(t.Context(), append([]string{"ctl"}, args...)...)
		if strings.Count(out, "\n") != 1 {
			t.Fatalf("ctl %v printed %q; want one line", args, out)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("ctl %v printed non-JSON %q", args, out)
		}
		return m, code
	}

	m, code := ctl("set", "--control", sock, "--name", "web-a", "--addr", "127.0.0.1:1", "--addr", "web-a:8080")
	if code != 0 || m["generation"] != float64(1) {
		t.Fatalf("ctl set: %v, exit %d", m, code)
	}
	if m, code = ctl("set", "--control", sock, "--name", "web-b", "--addr", "127.0.0.1:2"); code != 0 || m["generation"] != float64(2) {
		t.Fatalf("ctl set web-b: %v, exit %d", m, code)
	}
	m, code = ctl("status", "--control", sock)
	if cur, _ := m["current"].(map[string]any); code != 0 || cur["name"] != "web-b" || len(m["draining"].([]any)) != 1 {
		t.Fatalf("ctl status: %v, exit %d", m, code)
	}
	if m, code = ctl("wait-drained", "--control", sock, "--name", "web-a", "--timeout", "1s"); code != 0 || m["drained"] != true {
		t.Fatalf("ctl wait-drained: %v, exit %d", m, code)
	}
	if m, code = ctl("wait-drained", "--control", sock, "--name", "nope", "--timeout", "1s"); code != exitError || m["code"] != codeUnknownTarget {
		t.Fatalf("ctl wait-drained unknown: %v, exit %d", m, code)
	}
	accepted := make(chan struct{}, 1)
	hold := rawBackend(t, func(c *net.TCPConn) {
		accepted <- struct{}{}
		_, _ = io.Copy(io.Discard, c)
	})
	if _, code = ctl("set", "--control", sock, "--name", "web-c", "--addr", hold); code != 0 {
		t.Fatalf("ctl set web-c: exit %d", code)
	}
	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	<-accepted
	if _, code = ctl("set", "--control", sock, "--name", "web-d", "--addr", "127.0.0.1:2"); code != 0 {
		t.Fatalf("ctl set web-d: exit %d", code)
	}
	if m, code = ctl("wait-drained", "--control", sock, "--name", "web-c", "--timeout", "100ms"); code != exitNotDrained || m["drained"] != false {
		t.Fatalf("ctl wait-drained with a connection open: %v, exit %d; want exit %d", m, code, exitNotDrained)
	}
	if m, code = ctl("forget", "--control", sock, "--name", "web-a"); code != 0 || strings.Contains(fmt.Sprint(m["draining"]), "web-a") {
		t.Fatalf("ctl forget: %v, exit %d", m, code)
	}
	if m, code = ctl("status", "--control", filepath.Join(dir, "missing.sock")); code != exitError || m["error"] == nil {
		t.Fatalf("ctl status on a missing socket: %v, exit %d", m, code)
	}
	if _, code, err := runCLI(t.Context(), "ctl", "set", "--control", sock, "--name", "x"); code == 0 || err == nil {
		t.Fatalf("ctl set without --addr: exit %d, %v", code, err)
	}

	// SIGTERM stops `relay serve` cleanly, as docker stop does, once the
	// last connection has ended.
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := <-served; err != nil {
		t.Fatalf("relay serve after SIGTERM: %v\n%s", err, serveOut.String())
	}
}

// TestHelperRelayServe is `baton relay <args>` for TestCommand's child
// process; it does nothing in a normal test run.
func TestHelperRelayServe(t *testing.T) {
	env := os.Getenv("BATON_RELAY_HELPER_ARGS")
	if env == "" {
		t.Skip("helper process for TestCommand")
	}
	var args []string
	if err := json.Unmarshal([]byte(env), &args); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(t.Context(), syscall.SIGTERM)
	defer stop()
	if _, code, err := runCLI(ctx, args...); err != nil {
		t.Fatalf("exit %d: %v", code, err)
	}
}
