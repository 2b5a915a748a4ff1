package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
		Auth:    Auth{Token: []byte("tok"), Secret: []byte("sec")},
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
	signed := map[string]string{SignatureHeader: notify.Sign([]byte("sec"), []byte(body))}
	for _, c := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
	}{
		{"no credentials", "POST", "/v1/deploy/web", body, nil, 401},
		{"bad signature", "POST", "/v1/deploy/web", body, map[string]string{SignatureHeader: notify.Sign([]byte("x"), []byte(body))}, 401},
		{"too large", "POST", "/v1/deploy/web", strings.Repeat("x", 5000), signed, 413},
		{"bad target", "POST", "/v1/deploy/-x", body, signed, 400},
		{"unknown target", "POST", "/v1/deploy/nope", body, signed, 404},
		{"not enabled", "POST", "/v1/deploy/db", body, signed, 403},
		{"bad payload", "POST", "/v1/deploy/web", `{"tag":"!"}`, map[string]string{"Authorization": "Bearer tok"}, 400},
		{"GET on deploy", "GET", "/v1/deploy/web", "", nil, 405},
		{"status without auth", "GET", "/v1/deploys/id0", "", nil, 401},
	} {
		if code, m := do(c.method, c.path, c.body, c.hdr); code != c.code {
			t.Errorf("%s: %d %v, want %d", c.name, code, m, c.code)
		}
	}
	if len(f.jobs) != 0 {
		t.Fatalf("refused requests queued %v", f.jobs)
	}
	code, m := do("POST", "/v1/deploy/web", body, signed)
	if code != 202 || m["id"] != "id0" || m["image"] != "127.0.0.1:5000/shop/web:1.5" || m["status_url"] != "/v1/deploys/id0" || m["state"] != "running" {
		t.Fatalf("accepted: %d %v", code, m)
	}
	if j := f.jobs[0]; j.Target != "web" || j.Trigger != "webhook" || j.Who != "ci@10.1.2.3" || j.Image != "127.0.0.1:5000/shop/web:1.5" {
		t.Fatalf("job %+v", j)
	}
	if code, m := do("POST", "/v1/deploy/web", `{"push_data":{"tag":"2"},"repository":{"repo_name":"shop/api"}}`, map[string]string{"Authorization": "Bearer tok"}); code != 200 || m["ignored"] == nil {
		t.Fatalf("other repository: %d %v", code, m)
	}
	if code, m := do("GET", "/v1/deploys/id0", "", map[string]string{"Authorization": "Bearer tok"}); code != 200 || m["state"] != "deployed" {
		t.Fatalf("status: %d %v", code, m)
	}
	if code, _ := do("GET", "/v1/deploys/zzz", "", map[string]string{"Authorization": "Bearer tok"}); code != 404 {
		t.Fatalf("unknown status: %d", code)
	}
	f.closed = true
	if code, _ := do("POST", "/v1/deploy/web", "", map[string]string{"Authorization": "Bearer tok"}); code != http.StatusServiceUnavailable {
		t.Fatalf("while shutting down: %d", code)
	}
	if len(f.codes) == 0 || f.codes[0] != 401 {
		t.Fatalf("observed codes %v", f.codes)
	}
}
