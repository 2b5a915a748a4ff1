package redact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:hunter2@hooks.example/x":              "https://REDACTED@hooks.example/x",
		"https://tok3n@github.com/o/r":                      "https://REDACTED@github.com/o/r",
		"https://hooks.example/x?token=abc&room=ops":        "https://hooks.example/x?token=REDACTED&room=ops",
		"https://h.example/?access_token=a&API_KEY=b&sig=c": "https://h.example/?access_token=REDACTED&API_KEY=REDACTED&sig=REDACTED",
		"https://s3.example/b?X-Amz-Signature=abc&x-id=Get": "https://s3.example/b?X-Amz-Signature=REDACTED&x-id=Get",
		"https://h.example/plain?room=ops":                  "https://h.example/plain?room=ops",
		"not a url":                                         "not a url",
		"http://[::1]:9/?password=p":                        "http://[::1]:9/?password=REDACTED",
		"https://h.example/x?t%6Fken=abc":                   "https://h.example/x?t%6Fken=REDACTED",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText(t *testing.T) {
	in := `Post "https://bot:s3cr3t@chat.example/hook?token=t0k": dial tcp: connection refused; see https://docs.example/x`
	got := Text(in)
	for _, secret := range []string{"s3cr3t", "t0k", "bot:"} {
		if strings.Contains(got, secret) {
			t.Fatalf("%q still holds %q", got, secret)
		}
	}
	if !strings.Contains(got, "chat.example/hook") || !strings.Contains(got, "https://docs.example/x") || !strings.Contains(got, "connection refused") {
		t.Fatalf("redacted too much: %q", got)
	}
}

func TestError(t *testing.T) {
	base := context.DeadlineExceeded
	err := Error(fmt.Errorf("posting to https://u:pw@h.example/: %w", base))
	if strings.Contains(err.Error(), "pw") || !errors.Is(err, base) {
		t.Fatalf("%v (Is deadline: %v)", err, errors.Is(err, base))
	}
	plain := errors.New("nothing secret")
	if Error(plain) != plain || Error(nil) != nil {
		t.Fatal("an error without URL credentials was wrapped")
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewTextHandler(&buf, nil))).With("url", "https://a:b1@h.example/")
	log.Warn("posting to https://c:d2@h.example/ failed", "error", errors.New("Post \"https://e:f3@h.example/?token=g4\""),
		slog.Group("g", "u", "https://h:i5@h.example/"), "n", 3)
	out := buf.String()
	for _, secret := range []string{"b1", "d2", "f3", "g4", "i5"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log holds %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "n=3") || !strings.Contains(out, "h.example") {
		t.Fatalf("log lost its content: %s", out)
	}
}

func TestEnviron(t *testing.T) {
	got := Environ([]string{
		"PATH=/usr/bin", "BATON_WEBHOOK_TOKEN=t", "BATON_WEBHOOK_SECRET=s", "BATON_NOTIFY_SECRET=n",
		"BATON_NOTIFY_URL=https://x:y@h/", "BATON_SOMETHING_NEW=z", "BATON_STATE_DIR=/var/lib/baton",
		"BATON_SCOPE=a", "CREDENTIALS_DIRECTORY=/run/credentials/baton-serve.service", "DOCKER_HOST=unix:///x",
	})
	want := "PATH=/usr/bin BATON_STATE_DIR=/var/lib/baton BATON_SCOPE=a DOCKER_HOST=unix:///x"
	if strings.Join(got, " ") != want {
		t.Fatalf("Environ = %q, want %q", got, want)
	}
}

func TestToolEnviron(t *testing.T) {
	got := ToolEnviron([]string{
		"PATH=/usr/bin", "BATON_WEBHOOK_TOKEN=t", "BATON_WEBHOOK_SECRET=s", "BATON_NOTIFY_SECRET=n",
		"BATON_NOTIFY_URL=https://x:y@h/", "BATON_REGISTRY_PASSWORD=p", "BATON_API_KEY=k",
		"BATON_TEST_WEB_IMAGE=shop/web:2", "BATON_STATE_DIR=/var/lib/baton", "WEB_TAG=2",
		"CREDENTIALS_DIRECTORY=/run/credentials/baton-serve.service",
	})
	want := "PATH=/usr/bin BATON_TEST_WEB_IMAGE=shop/web:2 BATON_STATE_DIR=/var/lib/baton WEB_TAG=2"
	if strings.Join(got, " ") != want {
		t.Fatalf("ToolEnviron = %q, want %q", got, want)
	}
}
