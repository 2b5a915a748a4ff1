package notify

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/journal"
)

// A hook inherits baton's environment without a single secret: the webhook
// token and secret, the notification URL and secret, and systemd's
// credentials directory are gone, while the deploy's BATON_* details and
// ordinary variables are there. The positive control is the same command
// seeing PATH, BATON_STATE_DIR and BATON_TARGET.
func TestHookEnvHasNoSecrets(t *testing.T) {
	secrets := map[string]string{
		"BATON_WEBHOOK_TOKEN":   "tok-0123456789abcdef",
		"BATON_WEBHOOK_SECRET":  "sec-0123456789abcdef",
		"BATON_NOTIFY_SECRET":   "nsec-0123456789abcdef",
		"BATON_NOTIFY_URL":      "https://bot:pw-0123456789@chat.example/hook",
		"BATON_FUTURE_PASSWORD": "fut-0123456789",
		"CREDENTIALS_DIRECTORY": "/run/credentials/baton-serve.service",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("BATON_STATE_DIR", "/var/lib/baton-test")
	h, err := ParseHook("post-deploy", "/usr/bin/env", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.Run(t.Context(), HookEnv("post", journal.Entry{Target: "web", Outcome: "deployed"}))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range secrets {
		if strings.Contains(res.Output, v) || strings.Contains(res.Output, k+"=") {
			t.Errorf("the hook saw %s", k)
		}
	}
	for _, want := range []string{"PATH=" + os.Getenv("PATH"), "BATON_STATE_DIR=/var/lib/baton-test", "BATON_TARGET=web", "BATON_OUTCOME=deployed"} {
		if !strings.Contains(res.Output, want+"\n") {
			t.Errorf("the hook's environment lacks %s:\n%s", want, res.Output)
		}
	}
}

// A notification that fails names its URL without the credentials in it:
// neither the password, nor a query token, nor a chat webhook's secret path.
func TestNotifyErrorHasNoSecret(t *testing.T) {
	// A server that answers 500: the error comes from baton's own message.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	// A port nothing listens on: the error comes from net/http, which quotes
	// the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	const password, token, pathSecret = "hunter2-pw", "qtok-777", "T000-B000-XXXXSECRET"
	for _, base := range []string{srv.URL, "http://" + closed} {
		u := strings.Replace(base, "http://", "http://bot:"+password+"@", 1) + "/services/" + pathSecret + "?token=" + token
		n := &Notifier{URL: u, Attempts: 2, Backoff: time.Millisecond}
		err := n.Send(t.Context(), NewMessage(journal.Entry{Outcome: "failed", Target: "web"}, nil))
		if err == nil {
			t.Fatalf("%s: the notification succeeded", base)
		}
		for _, s := range []string{password, token, pathSecret, "bot"} {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("error %q holds %q", err, s)
			}
		}
		host := strings.TrimPrefix(base, "http://")
		if !strings.Contains(err.Error(), host) {
			t.Fatalf("error %q does not name the host %s", err, host)
		}
	}
}
