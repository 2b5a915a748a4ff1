package e2e

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/webhook"
)

// TestWebhookReplayAndForeignImage: a captured v1 signature does not deploy
// anything when replayed onto another target, as another method's signature
// (the empty-body signature of a status request), after the window, or a
// second time within it (401); an image of a foreign repository is refused
// (403) with a signature and with the token; the scheme before v1 (body-only
// sha256=) is refused on a generic body. Neither container changes (image
// IDs). Beside each refusal the legitimate request deploys: 202 and the
// container runs the new image; for the second target through the exact
// openssl/curl recipe of docs/unattended.md. /metrics needs the token.
func TestWebhookReplayAndForeignImage(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	foreignLocal, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "evil", HealthCheck: true})
	foreign := e.reg.Push(t, e.cli, foreignLocal, "other/"+strings.ToLower(testenv.UniqueName("evil-"))+":v1")
	scope := testenv.UniqueName("scope-")
	a, b := testenv.UniqueName("web-a-"), testenv.UniqueName("web-b-")
	e.runLabelled(a, v1, map[string]string{"baton.enable": "true", "baton.scope": scope})
	e.runLabelled(b, v1, map[string]string{"baton.enable": "true", "baton.scope": scope})
	imgA, imgB := e.inspect(a).Image, e.inspect(b).Image
	idA, idB := e.inspect(a).ID, e.inspect(b).ID

	dir := t.TempDir()
	secret, token := longSecret("secret-"), longSecret("token-")
	writeSecret(t, filepath.Join(dir, "secret"), secret+"\n")
	writeSecret(t, filepath.Join(dir, "token"), token)
	addr := "127.0.0.1:" + itoa(testenv.FreePort(t))
	srv := e.start("serve", "--listen", addr, "--secret-file", filepath.Join(dir, "secret"), "--token-file", filepath.Join(dir, "token"), "--scope", scope)
	testenv.WaitHTTP(t, "http://"+addr+"/healthz", 10*time.Second)
	h := &hook{t: t, base: "http://" + addr, token: token, secret: secret}
	base := len(e.journal())

	// The request a CI job sends to deploy v2 onto a, as captured on the wire.
	body := jsonBody(t, map[string]string{"image": v2, "actor": "ci"})
	ts, sig := webhook.Sign([]byte(secret), "POST", "/v1/deploy/"+a, time.Now(), body)
	captured := map[string]string{webhook.TimestampHeader: ts, webhook.SignatureHeader: sig}
	// A status request, as captured: its body is empty.
	sts, ssig := webhook.Sign([]byte(secret), "GET", "/v1/deploys/anything", time.Now(), nil)
	if r := h.send("GET", "/v1/deploys/anything", "", nil, map[string]string{webhook.TimestampHeader: sts, webhook.SignatureHeader: ssig}); r.code != 404 {
		t.Fatalf("signed status request: %d %s, want 404 (authenticated, unknown id)", r.code, r.raw)
	}
	oldTS, oldSig := webhook.Sign([]byte(secret), "POST", "/v1/deploy/"+a, time.Now().Add(-6*time.Minute), body)

	for _, c := range []struct {
		what, path string
		body       []byte
		auth       string
		headers    map[string]string
		code       int
	}{
		{"a's signature replayed on b", "/v1/deploy/" + b, body, "", captured, 401},
		{"a status request's signature replayed as a deploy", "/v1/deploy/" + a, nil, "", map[string]string{webhook.TimestampHeader: sts, webhook.SignatureHeader: ssig}, 401},
		{"a signature from 6 minutes ago", "/v1/deploy/" + a, body, "", map[string]string{webhook.TimestampHeader: oldTS, webhook.SignatureHeader: oldSig}, 401},
		{"the captured signature with a newer timestamp", "/v1/deploy/" + a, body, "", map[string]string{webhook.TimestampHeader: strconv.FormatInt(time.Now().Unix()+1, 10), webhook.SignatureHeader: sig}, 401},
		{"body-only signature of a generic body", "/v1/deploy/" + a, body, "body-hmac", nil, 401},
		{"foreign repository, signed", "/v1/deploy/" + a, jsonBody(t, map[string]string{"image": foreign}), "hmac", nil, 403},
		{"foreign repository, bearer", "/v1/deploy/" + b, jsonBody(t, map[string]string{"image": foreign}), "bearer", nil, 403},
		{"same path on another registry", "/v1/deploy/" + a, jsonBody(t, map[string]string{"image": "localhost:1/" + e.repo + ":v2"}), "bearer", nil, 403},
	} {
		r := h.send("POST", c.path, c.auth, c.body, c.headers)
		if r.code != c.code {
			t.Fatalf("%s: %d %s, want %d", c.what, r.code, r.raw, c.code)
		}
		if c.code == 403 && !strings.Contains(r.raw, "not the container's repository") {
			t.Fatalf("%s: the refusal does not say why: %s", c.what, r.raw)
		}
	}
	if c := e.inspect(a); c.ID != idA || c.Image != imgA {
		t.Fatal("a refused request changed container a")
	}
	if c := e.inspect(b); c.ID != idB || c.Image != imgB {
		t.Fatal("a refused request changed container b")
	}
	if n := len(e.journal()); n != base {
		t.Fatalf("refused requests left %d journal entries", n-base)
	}

	// Positive control: the captured request itself, sent once, deploys.
	r := h.send("POST", "/v1/deploy/"+a, "", body, captured)
	if r.code != 202 {
		t.Fatalf("the legitimate signed request: %d %s", r.code, r.raw)
	}
	if st := h.waitDone(r.body["id"].(string), 90*time.Second); st["state"] != "deployed" || st["new_image"] != v2 {
		t.Fatalf("status %v", st)
	}
	movedA := e.assertSingle(a, v2)
	if movedA.Image == imgA {
		t.Fatal("a still runs the old image ID")
	}
	// The same request again, within the window: a replay.
	if r := h.send("POST", "/v1/deploy/"+a, "", body, captured); r.code != 401 || !strings.Contains(r.raw, "already used") {
		t.Fatalf("replay within the window: %d %s, want 401", r.code, r.raw)
	}
	if c := e.inspect(b); c.ID != idB || c.Image != imgB {
		t.Fatal("deploying a changed container b")
	}

	// Positive control for b, signed the way docs/unattended.md shows.
	script := `set -eu
body='{"image":"` + v2 + `"}'
path=/v1/deploy/` + b + `
ts=$(date +%s)
sig=$(printf 'POST\n%s\n%s\n%s' "$path" "$ts" "$body" | openssl dgst -sha256 -hmac "$(cat "$SECRET_FILE")" -r | cut -d' ' -f1)
curl -sS -o /dev/stderr -w '%{http_code}' -X POST -H "X-Baton-Timestamp: $ts" -H "X-Baton-Signature: v1=$sig" \
     -H 'Content-Type: application/json' --data-binary "$body" "$BATON_URL$path"
`
	cmd := exec.CommandContext(t.Context(), "/bin/sh", "-c", script)
	cmd.Env = append(cmd.Environ(), "SECRET_FILE="+filepath.Join(dir, "secret"), "BATON_URL="+h.base)
	var answer strings.Builder
	cmd.Stderr = &answer
	out, err := cmd.Output()
	if err != nil || string(out) != "202" {
		t.Fatalf("the documented curl recipe: %v, HTTP %s: %s", err, out, answer.String())
	}
	id := strings.Split(strings.Split(answer.String(), `"id":"`)[1], `"`)[0]
	if st := h.waitDone(id, 90*time.Second); st["state"] != "deployed" {
		t.Fatalf("status %v", st)
	}
	if c := e.assertSingle(b, v2); c.Image == imgB {
		t.Fatal("b still runs the old image ID")
	}
	if c := e.inspect(a); c.ID != movedA.ID {
		t.Fatal("deploying b changed container a")
	}
	if n := len(entriesBy(e.journal(), "webhook")); n != 2 {
		t.Fatalf("%d webhook deploys journaled, want 2", n)
	}

	// /metrics on the webhook listener: the token, or nothing.
	if r := h.send("GET", "/metrics", "", nil, nil); r.code != http.StatusUnauthorized {
		t.Fatalf("/metrics without the token: %d", r.code)
	}
	if n := metricWith(t, h.base+"/metrics", token, "baton_webhook_requests_total", `code="403"`); n != 3 {
		t.Fatalf("baton_webhook_requests_total{code=403} = %v, want 3", n)
	}
	if code, _ := srv.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
}

// TestServeRefusesShortSecrets: a token or secret under 16 bytes is a
// one-line error with exit code 2; so is a bad --allow-repository pattern.
// A 16-byte token starts (positive control).
func TestServeRefusesShortSecrets(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	writeSecret(t, filepath.Join(dir, "short"), "0123456789abcde") // 15 bytes
	writeSecret(t, filepath.Join(dir, "ok"), "0123456789abcdef")   // 16 bytes
	addr := "127.0.0.1:" + itoa(testenv.FreePort(t))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--token-file", filepath.Join(dir, "short")}, "token is 15 bytes, want at least 16"},
		{[]string{"--secret-file", filepath.Join(dir, "short")}, "secret is 15 bytes, want at least 16"},
		{[]string{"--token-file", filepath.Join(dir, "ok"), "--allow-repository", "shop/web:1"}, "--allow-repository"},
	} {
		r := e.run(append([]string{"serve", "--listen", addr}, c.args...)...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 2 || len(lines) != 1 || !strings.Contains(r.stderr, c.want) {
			t.Fatalf("%v: exit %d, stderr %q; want 2 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
	srv := e.start("serve", "--listen", addr, "--token-file", filepath.Join(dir, "ok"))
	testenv.WaitHTTP(t, "http://"+addr+"/healthz", 10*time.Second)
	if code, _ := srv.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("serve with a 16-byte token exited %d", code)
	}
}
