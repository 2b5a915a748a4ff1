package notify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/journal"
)

func TestNotifierPostsSignedJSON(t *testing.T) {
	var got Message
	var sig, ctype string
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway) // retried
			return
		}
		body, _ := io.ReadAll(r.Body)
		sig, ctype = r.Header.Get("X-Baton-Signature"), r.Header.Get("Content-Type")
		if Sign([]byte("k"), body) != sig {
			t.Errorf("signature %q does not match the body", sig)
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	e := journal.Entry{ID: "abc", Target: "web", Trigger: "webhook", Who: "ci@10.0.0.1", Outcome: "failed", ExitCode: 1, OldServing: true,
		OldImage: "shop/web:1", NewImage: "shop/web:2", Duration: 3 * time.Second, Error: "warm: new container web-baton-1: unhealthy after 3s; logs: boom | bang; web keeps serving shop/web:1"}
	n := &Notifier{URL: srv.URL, Secret: []byte("k"), Backoff: time.Millisecond}
	if err := n.Send(t.Context(), NewMessage(e, FailureLogTail(e.Error))); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || ctype != "application/json" {
		t.Fatalf("calls %d content type %q", calls.Load(), ctype)
	}
	if got.Event != "deploy.failed" || got.Target != "web" || got.Error != e.Error || got.Who != e.Who || got.ExitCode != 1 ||
		len(got.LogTail) != 2 || got.LogTail[0] != "boom" || got.LogTail[1] != "bang" || got.Text == "" {
		t.Fatalf("message %+v", got)
	}
	// The JSON field names are the journal's, flat.
	raw, _ := json.Marshal(NewMessage(journal.Entry{Outcome: "deployed", Target: "web"}, []string{"ready"}))
	var flat map[string]any
	_ = json.Unmarshal(raw, &flat)
	for _, k := range []string{"event", "target", "outcome", "log_tail", "old_image", "duration_ns", "text"} {
		if _, ok := flat[k]; !ok && k != "old_image" {
			t.Errorf("notification lacks %q: %s", k, raw)
		}
	}
	if flat["event"] != "deploy.succeeded" {
		t.Fatalf("event %v", flat["event"])
	}
}

func TestNotifierGivesUpOnClientError(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	n := &Notifier{URL: srv.URL, Backoff: time.Millisecond}
	if err := n.Send(t.Context(), NewMessage(journal.Entry{Outcome: "deployed"}, nil)); err == nil || calls.Load() != 1 {
		t.Fatalf("err %v after %d calls; a 404 is not retried", err, calls.Load())
	}
}

func TestFailureLogTail(t *testing.T) {
	for in, want := range map[string][]string{
		"pull: manifest unknown; web keeps serving x:1":                                  nil,
		"warm: c: unhealthy after 1s; logs: a | b | c":                                   {"a", "b", "c"},
		"warm: c: exited after 1s; last probe error: x; logs: only; web keeps serving x": {"only"},
	} {
		got := FailureLogTail(in)
		if len(got) != len(want) {
			t.Fatalf("%q: %q, want %q", in, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%q: %q, want %q", in, got, want)
			}
		}
	}
}
