package e2e

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/state"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/webhook"
)

// batonProc is a long-running baton (watch, serve) started by a test.
type batonProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	args string

	mu      sync.Mutex
	lines   []string
	changed chan struct{}
	done    chan struct{}
	code    int
}

// start starts baton with args and stops it (SIGKILL) in a cleanup if the
// test did not.
func (e *env) start(args ...string) *batonProc {
	e.t.Helper()
	p := &batonProc{t: e.t, cmd: e.command(args...), args: strings.Join(args, " "), changed: make(chan struct{}), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 256<<10), 256<<10)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		err := p.cmd.Wait()
		p.mu.Lock()
		p.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = -int(ws.Signal())
			}
		} else if err != nil {
			p.code = -1
		}
		p.mu.Unlock()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		e.t.Logf("baton %s: exit %d; stderr:\n%s", p.args, p.code, p.output())
	})
	return p
}

func (p *batonProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits until a stderr line contains every one of subs.
func (p *batonProc) waitLine(timeout time.Duration, subs ...string) string {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		lines, ch := p.lines[seen:], p.changed
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(l, s)
			}
			if all {
				return l
			}
		}
		select {
		case <-ch:
		case <-p.done:
			p.t.Fatalf("baton %s exited (%d) before logging %q", p.args, p.code, subs)
		case <-deadline.C:
			p.t.Fatalf("baton %s did not log %q within %s", p.args, subs, timeout)
		}
	}
}

// stop sends sig and waits up to timeout for the exit; it returns the exit
// code and how long the exit took.
func (p *batonProc) stop(sig syscall.Signal, timeout time.Duration) (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("baton %s still running %s after %v", p.args, timeout, sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code, time.Since(start)
}

// journal reads the test's journal.
func (e *env) journal() []journal.Entry {
	e.t.Helper()
	entries, skipped, err := journal.Open(e.engineState()).Read(journal.Filter{})
	if err != nil || skipped > 0 {
		e.t.Fatalf("journal: %v (%d damaged lines)", err, skipped)
	}
	return entries
}

// entriesBy returns the journal entries made by trigger.
func entriesBy(entries []journal.Entry, trigger string) []journal.Entry {
	var out []journal.Entry
	for _, en := range entries {
		if en.Trigger == trigger {
			out = append(out, en)
		}
	}
	return out
}

// waitFor polls cond (there is no event for what it checks) until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// unattendedService is a web container opted in to unattended deploys,
// behind nginx on the host through baton's relay.
type unattendedService struct {
	name, ref, scope string
	ng               *testenv.Nginx
}

// service runs repo:tag (version v) as an opted-in container behind host
// nginx and sets up the relay with one CLI deploy, whose settings are then
// recorded on the container for watch and serve to use.
func (e *env) service(tag, v string, appEnv map[string]string) *unattendedService {
	e.t.Helper()
	return e.serviceLabelled(tag, v, appEnv, nil)
}

// serviceLabelled is service with more labels on the container.
func (e *env) serviceLabelled(tag, v string, appEnv, labels map[string]string) *unattendedService {
	e.t.Helper()
	s := &unattendedService{ref: e.version(tag, v, appEnv), scope: testenv.UniqueName("scope-"), name: testenv.UniqueName("web-")}
	all := map[string]string{"baton.enable": "true", "baton.scope": s.scope}
	maps.Copy(all, labels)
	e.runLabelled(s.name, s.ref, all)
	s.ng = testenv.HostNginx(e.t, testenv.NginxOpts{UpstreamFile: e.t.TempDir() + "/web.conf",
		InitialServers: []string{testenv.ContainerIP(e.t, e.cli, s.name, e.net) + ":8080"}})
	e.mustDeploy("--force", "--nginx-upstream", s.ng.UpstreamFile(), "--nginx-reload", s.ng.ReloadCommand(), "--http-probe", "/healthz", s.name)
	return s
}

// runLabelled is runWeb with labels.
func (e *env) runLabelled(name, ref string, labels map[string]string) string {
	e.t.Helper()
	if _, err := e.cli.ImageInspect(e.t.Context(), ref); isNotFound(err) {
		e.pull(ref, "")
	}
	id := testenv.RunDemo(e.t, e.cli, testenv.RunOpts{Name: name, Image: ref, Network: e.net, Aliases: []string{"web"}, Labels: labels})
	testenv.WaitHealthy(e.t, e.cli, id, 60*time.Second)
	e.cleanupService(name)
	return id
}

// hook is a webhook client for a baton serve.
type hook struct {
	t           *testing.T
	base        string
	token       string
	secret      string
	contentType string
}

type hookReply struct {
	code int
	body map[string]any
	raw  string
}

// post sends body to /v1/deploy/target; auth is "hmac" (a v1 signature
// made now), "body-hmac" (the body-only signature registries use), "bearer",
// "" or a literal header value for X-Baton-Signature.
func (h *hook) post(target, auth string, body []byte) hookReply {
	h.t.Helper()
	return h.send(http.MethodPost, "/v1/deploy/"+target, auth, body, nil)
}

// send makes a request with the given auth (see post) and extra headers.
func (h *hook) send(method, path, auth string, body []byte, headers map[string]string) hookReply {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.base+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if h.contentType != "" {
		req.Header.Set("Content-Type", h.contentType)
	}
	switch auth {
	case "hmac":
		ts, sig := webhook.Sign([]byte(h.secret), method, path, time.Now(), body)
		req.Header.Set(webhook.TimestampHeader, ts)
		req.Header.Set(webhook.SignatureHeader, sig)
	case "body-hmac":
		req.Header.Set(webhook.SignatureHeader, sign(h.secret, body))
	case "bearer":
		req.Header.Set("Authorization", "Bearer "+h.token)
	case "":
	default:
		req.Header.Set(webhook.SignatureHeader, auth)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return h.do(req)
}

func (h *hook) do(req *http.Request) hookReply {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := hookReply{code: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// status fetches /v1/deploys/id with the bearer token.
func (h *hook) status(id string) hookReply {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), http.MethodGet, h.base+"/v1/deploys/"+id, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	return h.do(req)
}

// waitDone polls a request's status until it finished and returns it.
func (h *hook) waitDone(id string, timeout time.Duration) map[string]any {
	h.t.Helper()
	var last hookReply
	waitFor(h.t, timeout, "deploy request "+id+" to finish", func() bool {
		last = h.status(id)
		st, _ := last.body["state"].(string)
		return last.code == 200 && st != "queued" && st != "running"
	})
	return last.body
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// metric sums the samples of family whose labels include every k="v" given.
func metric(t *testing.T, url, family string, labels ...string) float64 {
	t.Helper()
	return metricWith(t, url, "", family, labels...)
}

// metricWith is metric with a bearer token (the webhook listener's /metrics).
func metricWith(t *testing.T, url, token, family string, labels ...string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", url, resp.Status)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, family+"{") && !strings.HasPrefix(line, family+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// registryNotification is a docker-registry 2.8 notification of a manifest
// push of repo:tag, in the exact shape the registry sends (recorded from one,
// see internal/webhook/testdata/registry-push.json), with a layer push
// before it as the registry sends those too.
func registryNotification(t *testing.T, repo, tag, host string) []byte {
	t.Helper()
	ev := func(mediaType, digest, tag string) map[string]any {
		target := map[string]any{"mediaType": mediaType, "size": 528, "digest": digest, "length": 528, "repository": repo,
			"url": "http://" + host + "/v2/" + repo + "/manifests/" + digest}
		if tag != "" {
			target["tag"] = tag
		}
		return map[string]any{
			"id": testenv.UniqueName("ev-"), "timestamp": time.Now().UTC().Format(time.RFC3339Nano), "action": "push",
			"target":  target,
			"request": map[string]any{"id": testenv.UniqueName("rq-"), "addr": "127.0.0.1:48414", "host": host, "method": "PUT", "useragent": "docker/20.10.24"},
			"actor":   map[string]any{},
			"source":  map[string]any{"addr": "vm:5000", "instanceID": "f9e9fb3a-ede4-4b00-8bb8-2fceb514b985"},
		}
	}
	return jsonBody(t, map[string]any{"events": []any{
		ev("application/octet-stream", "sha256:96520c1883f48a62de1f07a64ae2fec5c8d4ccd1a33e4ec0356952af192a4a5c", ""),
		ev("application/vnd.docker.distribution.manifest.v2+json", "sha256:bf15a8121b64f9db7684c4c36cfc56bcf12f30b71baefe25dfcabde71dadee68", tag),
	}})
}

// appContainersCtx is appContainers for a goroutine: no t.Fatal.
func (e *env) appContainersCtx(name string) []container.Summary {
	list, err := e.cli.ContainerList(e.t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "baton.service="+name), filters.Arg("label", "baton.role=app"))})
	if err != nil {
		return nil
	}
	return list
}

// runQuiet is run for a goroutine: it reports instead of failing.
func (e *env) runQuiet(args ...string) batonRun {
	r, err := e.runBaton(args...)
	if err != nil {
		r.code, r.stderr = -1, err.Error()
	}
	return r
}

func (e *env) stateDirHandle() *state.Dir {
	e.t.Helper()
	st, err := state.Open(e.engineState())
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// engineState is the state directory of the engine the test's baton talks
// to (the docker CLI's own choice in this environment): the root one on
// the machine's default engine, its own under engines/ on another (the
// current engine of make test's second pass).
func (e *env) engineState() string {
	e.t.Helper()
	ep, err := dockerctl.ResolveEndpoint("")
	if err != nil {
		e.t.Fatalf("the engine baton talks to: %v", err)
	}
	return state.EngineDir(e.stateDir, ep.Host)
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
}
