package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/notify"
	"github.com/baton-sh/baton/internal/unattended"
)

type fakeBackend struct {
	jobs   []unattended.Job
	codes  []int
	closed bool
}

func (f *fakeBackend) server() *Server {
	return &Server{
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("baton_up 1\n")) }),
		Auth:    testAuth(),
		MaxBody: 4096,
		Resolve: func(_ context.Context, target string) (string, error) {
			switch target {
			case "web":
				return "127.0.0.1:5000/shop/web:1.4", nil
			case "db":
				return "", fmt.Errorf("%w: db", ErrNotEnabled)
			}
			return "", fmt.Errorf("%w: %s", ErrNotFound, target)
		},
		Submit: func(j unattended.Job) (unattended.Status, error) {
			if f.closed {
				return unattended.Status{}, unattended.ErrClosed
			}
			j.ID = fmt.Sprintf("id%d", len(f.jobs))
			f.jobs = append(f.jobs, j)
			return unattended.Status{ID: j.ID, Target: j.Target, State: unattended.StateRunning}, nil
		},
		Status: func(id string) (unattended.Status, bool) {
			return unattended.Status{ID: id, State: "deployed"}, id == "id0"
		},
		Observe: func(code int) { f.codes = append(f.codes, code) },
	}
}

func TestServer(t *testing.T) {
	f := &fakeBackend{}
	h := f.server().Handler()
	do := func(method, path, body string, hdr map[string]string) (int, map[string]any) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = "10.1.2.3:5555"
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var m map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &m)
		return w.Code, m
	}
	body := `{"tag":"1.5","actor":"ci"}`
	bearer := map[string]string{"Authorization": "Bearer " + string(testToken)}
	n := 0
	// signed signs each request anew (a signature is accepted once).
	signed := func(method, path, body string) map[string]string {
		n++
		return signedHeaders(testSecret, method, path, testNow.Add(-time.Duration(n)*time.Second), body)
	}
	for _, c := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
	}{
		{"no credentials", "POST", "/v1/deploy/web", body, nil, 401},
		{"bad signature", "POST", "/v1/deploy/web", body, signedHeaders([]byte("x"), "POST", "/v1/deploy/web", testNow, body), 401},
		{"signature for another target", "POST", "/v1/deploy/web", body, signed("POST", "/v1/deploy/api", body), 401},
		{"signature of a status request", "POST", "/v1/deploy/web", "", signed("GET", "/v1/deploys/id0", ""), 401},
		{"old body-only signature on a generic body", "POST", "/v1/deploy/web", body, map[string]string{SignatureHeader: notify.Sign(testSecret, []byte(body))}, 401},
		{"body-only signature of the empty body", "POST", "/v1/deploy/web", "", map[string]string{SignatureHeader: notify.Sign(testSecret, nil)}, 401},
		{"too large", "POST", "/v1/deploy/web", strings.Repeat("x", 5000), bearer, 413},
		{"bad target", "POST", "/v1/deploy/-x", body, signed("POST", "/v1/deploy/-x", body), 400},
		{"unknown target", "POST", "/v1/deploy/nope", body, signed("POST", "/v1/deploy/nope", body), 404},
		{"not enabled", "POST", "/v1/deploy/db", body, signed("POST", "/v1/deploy/db", body), 403},
		{"bad payload", "POST", "/v1/deploy/web", `{"tag":"!"}`, bearer, 400},
		{"foreign repository", "POST", "/v1/deploy/web", `{"image":"127.0.0.1:5000/shop/api:1"}`, bearer, 403},
		{"same path on another registry", "POST", "/v1/deploy/web", `{"image":"evil.example/shop/web:1"}`, bearer, 403},
		{"same path on Docker Hub", "POST", "/v1/deploy/web", `{"image":"shop/web:1"}`, bearer, 403},
		{"GET on deploy", "GET", "/v1/deploy/web", "", nil, 405},
		{"status without auth", "GET", "/v1/deploys/id0", "", nil, 401},
		{"status, body-only signature", "GET", "/v1/deploys/id0", "", map[string]string{SignatureHeader: notify.Sign(testSecret, nil)}, 401},
		{"metrics without auth", "GET", "/metrics", "", nil, 401},
		{"metrics, body-only signature", "GET", "/metrics", "", map[string]string{SignatureHeader: notify.Sign(testSecret, nil)}, 401},
	} {
		if code, m := do(c.method, c.path, c.body, c.hdr); code != c.code {
			t.Errorf("%s: %d %v, want %d", c.name, code, m, c.code)
		}
	}
	if len(f.jobs) != 0 {
		t.Fatalf("refused requests queued %v", f.jobs)
	}
	code, m := do("POST", "/v1/deploy/web", body, signed("POST", "/v1/deploy/web", body))
	if code != 202 || m["id"] != "id0" || m["image"] != "127.0.0.1:5000/shop/web:1.5" || m["status_url"] != "/v1/deploys/id0" || m["state"] != "running" {
		t.Fatalf("accepted: %d %v", code, m)
	}
	if j := f.jobs[0]; j.Target != "web" || j.Trigger != "webhook" || j.Who != "ci@10.1.2.3" || j.Image != "127.0.0.1:5000/shop/web:1.5" {
		t.Fatalf("job %+v", j)
	}
	if code, m := do("POST", "/v1/deploy/web", `{"push_data":{"tag":"2"},"repository":{"repo_name":"shop/api"}}`, bearer); code != 200 || m["ignored"] == nil {
		t.Fatalf("other repository: %d %v", code, m)
	}
	if code, m := do("GET", "/v1/deploys/id0", "", bearer); code != 200 || m["state"] != "deployed" {
		t.Fatalf("status: %d %v", code, m)
	}
	if code, _ := do("GET", "/v1/deploys/zzz", "", bearer); code != 404 {
		t.Fatalf("unknown status: %d", code)
	}
	if code, _ := do("GET", "/metrics", "", bearer); code != 200 {
		t.Fatalf("metrics with the token: %d", code)
	}
	if code, _ := do("GET", "/v1/deploys/id0", "", signed("GET", "/v1/deploys/id0", "")); code != 200 {
		t.Fatalf("status, signed: %d", code)
	}
	f.closed = true
	if code, _ := do("POST", "/v1/deploy/web", "", bearer); code != http.StatusServiceUnavailable {
		t.Fatalf("while shutting down: %d", code)
	}
	if len(f.codes) == 0 || f.codes[0] != 401 {
		t.Fatalf("observed codes %v", f.codes)
	}
}

// An operator's allowlist lets a webhook deploy another repository; the
// container's own repository needs none.
func TestServerRepositoryAllowlist(t *testing.T) {
	f := &fakeBackend{}
	srv := f.server()
	var err error
	if srv.Repos, err = NewRepoPolicy([]string{"127.0.0.1:5000/shop/*"}); err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	post := func(body string) int {
		r := httptest.NewRequest("POST", "/v1/deploy/web", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+string(testToken))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for body, want := range map[string]int{
		`{"image":"127.0.0.1:5000/shop/api:2"}`:      202,
		`{"image":"127.0.0.1:5000/shop/web:2"}`:      202,
		`{"image":"127.0.0.1:5000/other/web:2"}`:     403,
		`{"image":"127.0.0.1:5000/shop/web/sub:2"}`:  403,
		`{"image":"127.0.0.1:5001/shop/api:2"}`:      403,
		`{"image":"docker.io/library/busybox:1.36"}`: 403,
	} {
		if got := post(body); got != want {
			t.Errorf("%s: %d, want %d", body, got, want)
		}
	}
	if len(f.jobs) != 2 {
		t.Fatalf("jobs %v, want the 2 allowed", f.jobs)
	}
}

// A body-only signature counts only on a registry notification: fresh
// pushes of the container's repository deploy once; the same notification
// again, or a stale one, is answered 200 and deploys nothing.
func TestServerBodyOnlyNotification(t *testing.T) {
	f := &fakeBackend{}
	h := f.server().Handler()
	post := func(target, body string) (int, map[string]any) {
		r := httptest.NewRequest("POST", "/v1/deploy/"+target, strings.NewReader(body))
		r.Header.Set("Content-Type", DistributionMediaType)
		r.Header.Set(GitHubSignatureHeader, notify.Sign(testSecret, []byte(body)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var m map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &m)
		return w.Code, m
	}
	note := func(at time.Time, repo, tag string) string {
		return fmt.Sprintf(`{"events":[{"action":"push","timestamp":%q,"target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":%q,"tag":%q}}]}`,
			at.UTC().Format(time.RFC3339Nano), repo, tag)
	}
	fresh := note(testNow.Add(-time.Minute), "shop/web", "1.6")
	if code, m := post("web", fresh); code != 202 || m["image"] != "127.0.0.1:5000/shop/web:1.6" {
		t.Fatalf("fresh notification: %d %v", code, m)
	}
	if code, m := post("web", fresh); code != 200 || m["ignored"] == nil {
		t.Fatalf("the same notification again: %d %v", code, m)
	}
	if code, m := post("web", note(testNow.Add(-DefaultWindow-time.Second), "shop/web", "1.7")); code != 200 || m["ignored"] == nil {
		t.Fatalf("stale notification: %d %v", code, m)
	}
	if code, m := post("web", strings.Replace(note(testNow, "shop/web", "1.8"), `"timestamp"`, `"time"`, 1)); code != 200 || m["ignored"] == nil {
		t.Fatalf("undated notification: %d %v", code, m)
	}
	if code, m := post("web", note(testNow, "shop/api", "1.8")); code != 200 || m["ignored"] == nil {
		t.Fatalf("another repository: %d %v", code, m)
	}
	if len(f.jobs) != 1 {
		t.Fatalf("jobs %v, want only the first", f.jobs)
	}
}

func TestRepoPolicy(t *testing.T) {
	p, err := NewRepoPolicy([]string{"registry.example/shop/*", "nginx", "acme/*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		current, image string
		ok             bool
	}{
		{"registry.example/shop/web:1", "registry.example/shop/web:2", true},
		{"registry.example/shop/web:1", "", true},
		{"registry.example/shop/web@sha256:" + strings.Repeat("a", 64), "registry.example/shop/web:2", true},
		{"registry.example/shop/web:1", "registry.example/shop/api:2", true},
		{"registry.example/shop/web:1", "registry.example/shop/a/b:2", false},
		{"registry.example/shop/web:1", "other.example/shop/web:2", false},
		{"nginx:1.25", "docker.io/library/nginx:1.26", true},
		{"web:1", "nginx:1.26", true},
		{"web:1", "library/nginx:1.26", true},
		{"web:1", "acme/web:1", true},
		{"web:1", "evil/web:1", false},
		{strings.Repeat("b", 64), "web:2", false},
		{"sha256:" + strings.Repeat("b", 64), "nginx:2", true},
	} {
		err := p.Check(c.current, c.image)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrForeignImage)) {
			t.Errorf("Check(%q, %q) = %v, want ok=%v", c.current, c.image, err, c.ok)
		}
	}
	for _, bad := range []string{"shop/web:1", "shop/web@sha256:aa", "shop/[", "host:5000/x:tag"} {
		if _, err := NewRepoPolicy([]string{bad}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if _, err := NewRepoPolicy([]string{"localhost:5000/x"}); err != nil {
		t.Errorf("a host with a port: %v", err)
	}
}
