package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The internal commands baton runs in its helper containers speak through
// their exit codes, and baton's own binary must pass them on:
// `kernel-helper established` exits 4 for a connection table that cannot
// be read (the container is gone) and 3 for an argument it refuses, which
// the drain tells apart from a failed exec (exit 1). Run used to turn every
// such code into 1, so a gone container read as a failed look. The
// positive control counts a connection of this process's own.
func TestInternalCommandsKeepTheirExitCodes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"baton", "kernel-helper", "established"}, args...), &stdout, &stderr)
		return code, strings.TrimSpace(stdout.String()), stderr.String()
	}
	if code, out, errOut := run("--pid", strconv.Itoa(os.Getpid()), "--port", port, "--from", "127.0.0.1"); code != 0 || out != "1" {
		t.Fatalf("own connection: exit %d, stdout %q, stderr %q; want 0 and 1", code, out, errOut)
	}
	if code, _, errOut := run("--pid", "999999999", "--port", port, "--from", "127.0.0.1"); code != 4 || !strings.Contains(errOut, "cannot be read") {
		t.Fatalf("no such process: exit %d, stderr %q; want 4", code, errOut)
	}
	if code, _, errOut := run("--pid", "1", "--port", port, "--from", "nope"); code != 3 || !strings.Contains(errOut, "--from") {
		t.Fatalf("bad --from: exit %d, stderr %q; want 3", code, errOut)
	}
	// baton's own exit codes stay as they were: a usage error is 2.
	var stderr bytes.Buffer
	if code := Run(context.Background(), []string{"baton", "deploy", "--no-such-flag"}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Fatalf("usage error: exit %d (%s), want 2", code, stderr.String())
	}
}
