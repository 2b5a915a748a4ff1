package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/docker/cli/cli/config"
)

// TestContextFlagRefusals: more than one --context, and a context the
// store does not hold, are usage errors (exit 2, one line naming them)
// before any engine is touched; the flag is accepted before the verb and
// after the target alike.
func TestContextFlagRefusals(t *testing.T) {
	dir := t.TempDir()
	prev := config.Dir()
	config.SetDir(dir)
	t.Cleanup(func() { config.SetDir(prev) })
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--context", "a", "promote", "web", "--context", "b"}, "more than one --context (a, b)"},
		// deploy, status, rollback, history, watch and serve take several: a rollout across hosts,
		// which refuses a context the store does not hold the same way.
		{[]string{"deploy", "web", "--context", "prod", "--context", "nope", "--image", "x"}, `docker context "prod": no such docker context`},
		{[]string{"--context", "prod", "status", "--context", "nope"}, `docker context "prod": no such docker context`},
		{[]string{"status", "web", "--context", "nope"}, `docker context "nope": no such docker context`},
		{[]string{"--context", "nope", "rollback", "web"}, `docker context "nope": no such docker context`},
		{[]string{"--context", "prod", "watch", "--context", "nope"}, `docker context "prod": no such docker context`},
		{[]string{"history", "--context", "prod", "--context", "nope"}, `docker context "prod": no such docker context`},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"baton", "--state-dir", t.TempDir()}, tc.args...), &stdout, &stderr)
		msg := stderr.String()
		if code != 2 || !strings.Contains(msg, tc.want) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Errorf("baton %s: exit %d, stderr %q; want exit 2 and one line with %q", strings.Join(tc.args, " "), code, msg, tc.want)
		}
	}
	// Control: with one context that exists, --context resolves and the
	// run gets as far as the engine (here: a socket with nothing behind it,
	// named in the error, exit 1).
	sock := "unix://" + dir + "/none.sock"
	var stdout, stderr bytes.Buffer
	t.Setenv("DOCKER_HOST", sock)
	code := Run(context.Background(), []string{"baton", "--state-dir", t.TempDir(), "status", "--context", "default"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "DOCKER_HOST="+sock+": cannot reach the Docker engine") {
		t.Errorf("status --context default with DOCKER_HOST=%s: exit %d, stderr %q", sock, code, stderr.String())
	}
}
