package swarmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/testenv"
)

// TestSwarmWatchService proves baton watch for a Swarm service: a service
// opted in by its own label runs a registry tag; a new image pushed under
// the tag is deployed through Swarm's updater (the spec ends pinned to the
// new digest), under load through nginx with no failed request, and the
// notification and metrics carry the same fields as a container deploy's;
// then baton serve deploys it back on a webhook.
func TestSwarmWatchService(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Docker engine of its own (skipped with -short)")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	reg := testenv.StartRegistry(t, testenv.RegistryOpts{})
	repoTag := "shop/" + testenv.UniqueName("h11b-web") + ":live"
	live := reg.Push(t, cli, demo(t, cli, "v1", nil), repoTag)
	// Pinned, as docker service create and baton deploy leave a spec.
	first := live + "@" + reg.Digest(t, repoTag)
	s := newSetup(t, first, time.Second)
	// Opt the service in by its own label (no task restarts for that).
	svc := s.service(t)
	svc.Spec.Labels["baton.enable"] = "true"
	if _, err := cli.ServiceUpdate(t.Context(), svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var notes []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &m) == nil {
			mu.Lock()
			notes = append(notes, m)
			mu.Unlock()
		}
	}))
	defer hook.Close()
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd, _, errb := s.command("watch", "--interval", "2s", "--notify-url", hook.URL, "--metrics-listen", metricsAddr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)

	l := s.load(t)
	// A first check finds nothing to do (its metric says it ran, so the
	// assertion below means something); then the tag moves.
	unchanged := `baton_watch_checks_total{result="unchanged",target="` + s.name + `"}`
	for deadline := time.Now().Add(time.Minute); !strings.Contains(scrape(t, metricsAddr), unchanged); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("watch made no unchanged check of %s within a minute\n%s", s.name, errb)
		}
	}
	if got := s.image(t); got != first {
		t.Fatalf("watch deployed before the tag moved: service runs %s\n%s", got, errb)
	}
	reg.Push(t, cli, demo(t, cli, "v2", nil), repoTag)
	digest := reg.Digest(t, repoTag)
	want := live + "@" + digest
	deadline := time.Now().Add(2 * time.Minute)
	for s.image(t) != want {
		if time.Now().After(deadline) {
			t.Fatalf("watch did not deploy the moved tag within 2 minutes: service runs %s, want %s\n%s", s.image(t), want, errb)
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.waitRunning(t, want, 2)
	// The notification follows the deploy's end.
	var note map[string]any
	for deadline := time.Now().Add(30 * time.Second); note == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		if len(notes) > 0 {
			note = notes[0]
		}
		mu.Unlock()
	}
	metrics := scrape(t, metricsAddr)
	stop()

	// baton serve: a webhook deploys another tag of the repository.
	repo, _, _ := strings.Cut(repoTag, ":")
	v3 := reg.Push(t, cli, demo(t, cli, "v3", nil), repo+":v3")
	v3pinned := v3 + "@" + reg.Digest(t, repo+":v3")
	token := testenv.UniqueName("h11b-token-") + testenv.UniqueName("")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	srv, _, srvErr := s.command("serve", "--listen", addr)
	srv.Env = append(srv.Env, "BATON_WEBHOOK_TOKEN="+token)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() }()
	testenv.WaitHTTP(t, "http://"+addr+"/healthz", 30*time.Second)
	post := func(target, image string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/deploy/"+target, strings.NewReader(`{"image":"`+image+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, body := post(s.name+"-nope", v3); code != http.StatusNotFound {
		t.Fatalf("webhook for a service that does not exist: %d %v, want 404", code, body)
	}
	code, body := post(s.name, v3)
	if code != http.StatusAccepted {
		t.Fatalf("webhook for service %s: %d %v\n%s", s.name, code, body, srvErr)
	}
	var st map[string]any
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/deploys/"+body["id"].(string), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			st = nil
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if s, _ := st["state"].(string); s != "" && s != "queued" && s != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook deploy of %s did not finish in 2 minutes: %v\n%s", s.name, st, srvErr)
		}
	}
	if st["state"] != "deployed" || st["new_image"] != v3pinned || st["old_image"] != want {
		t.Fatalf("webhook deploy of %s: %v, want deployed %s -> %s\n%s", s.name, st, want, v3pinned, srvErr)
	}
	if got := s.image(t); got != v3pinned {
		t.Fatalf("after the webhook the service runs %s, want %s", got, v3pinned)
	}
	s.waitRunning(t, v3pinned, 2)

	res := l.Stop()
	t.Logf("watch and webhook deployed service %s under load: %d of %d requests failed", s.name, res.Failed(), res.Total())

	switch {
	case note == nil:
		t.Fatalf("no notification after the deploy\n%s", errb)
	case note["event"] != "deploy.succeeded" || note["target"] != s.name || note["trigger"] != "watch" || note["new_image"] != want || note["old_image"] != first || note["outcome"] != "deployed":
		t.Fatalf("notification %v: want deploy.succeeded of %s by watch, %s -> %s", note, s.name, first, want)
	}
	for _, line := range []string{
		`baton_deploys_total{result="deployed",target="` + s.name + `",trigger="watch"} 1`,
		`baton_watch_checks_total{result="changed",target="` + s.name + `"} 1`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %s:\n%s", line, grepLines(metrics, s.name))
		}
	}
	if r := s.run(t, "history", s.name); r.code != 0 || !strings.Contains(r.stdout, "watch") {
		t.Errorf("history of %s: exit %d, want the watch deploy\n%s%s", s.name, r.code, r.stdout, r.stderr)
	}
	testenv.CheckLoad(t, res)
}

// scrape returns baton's /metrics page at addr ("" while it does not answer
// yet).
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
