package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRolloutRefusals: settings that cannot work across hosts, a bad hosts
// file and a bad --down are usage errors (exit 2, one line) before any
// engine is touched; the control gets past them to the engines, which here
// do not answer (exit 1, naming the host, nothing changed).
func TestRolloutRefusals(t *testing.T) {
	dir := t.TempDir()
	dead := "unix://" + filepath.Join(dir, "none.sock")
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("one docker-host="+dead+"\ntwo docker-host="+dead+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("one relay-address=web1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"deploy", "web", "--hosts", hosts, "--nginx-upstream", "/etc/nginx/baton/web.conf", "--nginx-container", "nginx"}, 2, "--nginx-container with several hosts"},
		{[]string{"deploy", "web", "--hosts", hosts, "--relay=false"}, 2, "--relay=false with several hosts"},
		{[]string{"deploy", "web", "--hosts", hosts, "--down", "ignore"}, 2, `--down "ignore"`},
		{[]string{"deploy", "web", "--hosts", hosts, "--relay-address", "10.0.0.1"}, 2, "give HOST=IP for each"},
		{[]string{"deploy", "web", "--hosts", filepath.Join(dir, "missing")}, 2, "--hosts: open"},
		{[]string{"deploy", "web", "--hosts", bad}, 2, `bad:1: relay-address "web1" is not an IP address`},
		{[]string{"deploy", "web", "--hosts", hosts, "-f", "docker-compose.yml"}, 2, "compose services are deployed on one host at a time"},
		{[]string{"deploy", "--hosts", hosts}, 2, "exactly one CONTAINER"},
		{[]string{"deploy", "web", "--hosts", hosts, "--image", "x", "--canary", "20"}, 2, "--canary 20 with several hosts"},
		{[]string{"deploy", "web", "--hosts", hosts, "--image", "x", "--swarm"}, 2, "--swarm is for a Swarm service"},
		{[]string{"deploy", "web", "--image", "x", "--down", "skip"}, 2, "--down is for a rollout"},
		{[]string{"deploy", "web", "--image", "x", "--rollback-on-failure"}, 2, "--rollback-on-failure is for a rollout"},
		{[]string{"deploy", "web", "-f", "docker-compose.yml", "--update-delay", "5s"}, 2, "--update-delay is for a Swarm service"},
		// Control: a timed canary passes the check and reaches the (dead) engines.
		{[]string{"deploy", "web", "--hosts", hosts, "--image", "x", "--canary", "20:1m"}, 1, "host one: engine does not answer"},
		// Control: valid, and the engines are reached (and down).
		{[]string{"deploy", "web", "--hosts", hosts, "--image", "x"}, 1, "host one: engine does not answer, so no host was changed"},
		{[]string{"deploy", "web", "--hosts", hosts, "--image", "x", "--down", "skip"}, 1, "no host of web answers"},
		{[]string{"rollback", "web", "--hosts", hosts}, 1, "host one: engine does not answer"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"baton", "--state-dir", t.TempDir()}, tc.args...), &stdout, &stderr)
		msg := stderr.String()
		if code != tc.code || !strings.Contains(msg, tc.want) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Errorf("baton %s: exit %d, stderr %q; want exit %d and one line with %q", strings.Join(tc.args, " "), code, msg, tc.code, tc.want)
		}
	}
}
