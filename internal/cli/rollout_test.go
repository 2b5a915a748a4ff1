package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/state"
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
		{[]string{"status", "--hosts", hosts}, 2, "status across hosts takes the service NAME"},
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
		// watch and serve across hosts: one rollout per request.
		{[]string{"watch", "--once", "--hosts", hosts, "--down", "ignore"}, 2, `--down "ignore"`},
		{[]string{"watch", "--once", "--hosts", filepath.Join(dir, "missing")}, 2, "--hosts: open"},
		{[]string{"watch", "--once", "--down", "skip"}, 2, "--down is for a rollout"},
		{[]string{"watch", "--once", "--rollback-on-failure"}, 2, "--rollback-on-failure is for a rollout"},
		// Control: the watched (last) host's engine is dialled.
		{[]string{"watch", "--once", "--hosts", hosts}, 1, "host two (the last of the rollout, whose containers are watched)"},
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

// TestRolloutHistory: history across hosts reads each engine's journal from
// its own state directory (no engine need answer) and labels every entry
// with its host, oldest first; the single-host control reads the default
// engine's journal only.
func TestRolloutHistory(t *testing.T) {
	dir := t.TempDir()
	// The docker CLI's own choice is the default engine here, whatever the
	// environment running the test chose.
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONTEXT", "")
	t.Setenv("DOCKER_CONFIG", dir)
	root := filepath.Join(dir, "state")
	one, two := "unix://"+filepath.Join(dir, "one.sock"), "unix://"+filepath.Join(dir, "two.sock")
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("one docker-host="+one+"\ntwo docker-host="+two+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	add := func(engine string, at time.Duration, target, img string) {
		st, err := state.Open(state.EngineDir(root, engine))
		if err != nil {
			t.Fatal(err)
		}
		if err := journal.Open(st.Path()).Append(journal.Entry{ID: journal.NewID(), Target: target, StartedAt: t0.Add(at), Outcome: "deployed", NewImage: img, Trigger: "cli"}); err != nil {
			t.Fatal(err)
		}
	}
	add(one, 0, "web", "web:1")
	add(two, time.Minute, "web", "web:1")
	add(one, 2*time.Minute, "web", "web:2")
	add(two, 3*time.Minute, "web", "web:2")
	add(two, 4*time.Minute, "api", "api:2")
	add("", 5*time.Minute, "web", "web:local") // the default engine's, in the root

	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"baton", "--state-dir", root}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := run("history", "web", "--hosts", hosts, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []struct {
		Host     string `json:"host"`
		Target   string `json:"target"`
		NewImage string `json:"new_image"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := []string{"one web:1", "two web:1", "one web:2", "two web:2"}
	var have []string
	for _, e := range got {
		have = append(have, e.Host+" "+e.NewImage)
	}
	if strings.Join(have, ",") != strings.Join(want, ",") {
		t.Errorf("history --json across hosts: %v, want %v", have, want)
	}
	code, out, _ = run("history", "web", "--hosts", hosts, "--limit", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "STARTED") || !strings.Contains(lines[0], "HOST") ||
		!strings.Contains(lines[1], " one ") || !strings.Contains(lines[2], " two ") || !strings.Contains(lines[2], "web:2") {
		t.Errorf("history --limit 2 across hosts: exit %d\n%s", code, out)
	}
	// Control: one engine's journal only.
	code, out, _ = run("history", "web", "--json")
	if code != 0 || !strings.Contains(out, "web:local") || strings.Contains(out, "web:1") {
		t.Errorf("history on the default engine: exit %d\n%s", code, out)
	}
	// A context the docker CLI does not know is bad input.
	code, _, errOut = run("history", "web", "--context", "nosuch", "--context", "other")
	if code != 2 || !strings.Contains(errOut, "nosuch") {
		t.Errorf("unknown context: exit %d, %q; want 2 naming it", code, errOut)
	}
}
