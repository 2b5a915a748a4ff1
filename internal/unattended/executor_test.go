package unattended

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/notify"
)

// The executor journals every run with the requests it served, notifies on
// deployed and failed (not up to date), and a failing pre-deploy hook
// cancels the deploy and is journaled as a failure.
func TestExecutor(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	var mu sync.Mutex
	var notes []notify.Message
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m notify.Message
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &m)
		mu.Lock()
		notes = append(notes, m)
		mu.Unlock()
	}))
	defer srv.Close()
	dir := t.TempDir()
	deploys := 0
	outcome := deploy.OutcomeDeployed
	var deployErr error
	x := &Executor{
		Deploy: func(ctx context.Context, req deploy.Request) (*deploy.Result, error) {
			deploys++
			res := &deploy.Result{Target: req.Target, Trigger: req.Trigger, Who: req.Who, NewImage: req.Image, NewID: "new1",
				Outcome: outcome, StartedAt: time.Now(), Duration: time.Second, OldServing: outcome != deploy.OutcomeDeployed}
			if deployErr != nil {
				res.Error = deployErr.Error()
			}
			return res, deployErr
		},
		Journal: journal.Open(dir),
		Notify:  &notify.Notifier{URL: srv.URL},
		LogTail: func(ctx context.Context, id string) []string { return []string{"tail of " + id} },
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	marker := filepath.Join(dir, "post-ran")
	var err error
	x.Post, err = notify.ParseHook("post-deploy", `/bin/sh -c 'echo "$BATON_OUTCOME" >> `+marker+`'`, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	run := Run{ID: "r1", Job: Job{Target: "web", Image: "web:2", Trigger: "webhook", Who: "ci"}, Requests: []string{"r1", "r2"}}
	if _, err := x.Run(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	outcome = deploy.OutcomeUpToDate
	if _, err := x.Run(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	outcome, deployErr = deploy.OutcomeFailed, &deploy.PhaseError{Phase: deploy.PhaseWarm, OldServing: true, Err: errors.New("unhealthy; logs: a | b")}
	if _, err := x.Run(t.Context(), run); err == nil {
		t.Fatal("want the deploy's error")
	}
	x.Pre, _ = notify.ParseHook("pre-deploy", `/bin/sh -c 'exit 7'`, time.Minute)
	if res, err := x.Run(t.Context(), run); !errors.Is(err, deploy.ErrInvalid) || res.Outcome != deploy.OutcomeFailed {
		t.Fatalf("pre-deploy hook failure: %v %+v", err, res)
	}
	if deploys != 3 {
		t.Fatalf("%d deploys; the failed pre-deploy hook must prevent the fourth", deploys)
	}
	entries, _, err := x.Journal.Read(journal.Filter{})
	if err != nil || len(entries) != 4 {
		t.Fatalf("journal %d entries, %v", len(entries), err)
	}
	wantOutcome := []string{"deployed", "up-to-date", "failed", "failed"}
	wantCode := []int{0, 0, 1, 2}
	for i, e := range entries {
		if e.Outcome != wantOutcome[i] || e.ExitCode != wantCode[i] || e.ID != "r1" || len(e.Requests) != 2 || e.Trigger != "webhook" || e.Who != "ci" {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notes) != 3 || notes[0].Event != "deploy.succeeded" || notes[0].LogTail[0] != "tail of new1" ||
		notes[1].Event != "deploy.failed" || len(notes[1].LogTail) != 2 || notes[2].Event != "deploy.failed" {
		t.Fatalf("notifications %+v", notes)
	}
	b, _ := os.ReadFile(marker)
	if string(b) != "deployed\nup-to-date\nfailed\nfailed\n" {
		t.Fatalf("post-deploy hook saw %q", b)
	}
}

// Admit runs when the queued run starts: a job it refuses (the container
// was opted out while the request waited) deploys nothing and is journaled
// as a failure with exit code 2; one it admits deploys.
func TestExecutorAdmit(t *testing.T) {
	dir := t.TempDir()
	deploys := 0
	optedIn := true
	x := &Executor{
		Deploy: func(ctx context.Context, req deploy.Request) (*deploy.Result, error) {
			deploys++
			return &deploy.Result{Target: req.Target, Outcome: deploy.OutcomeDeployed, StartedAt: time.Now()}, nil
		},
		Admit: func(ctx context.Context, job Job) error {
			if !optedIn {
				return errors.New("container web: it is labelled baton.enable=false")
			}
			return nil
		},
		Journal: journal.Open(dir),
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if _, err := x.Run(t.Context(), Run{ID: "a", Job: Job{Target: "web", Trigger: "webhook"}, Requests: []string{"a"}}); err != nil || deploys != 1 {
		t.Fatalf("admitted job: %v, %d deploys", err, deploys)
	}
	optedIn = false
	_, err := x.Run(t.Context(), Run{ID: "b", Job: Job{Target: "web", Trigger: "webhook"}, Requests: []string{"b"}})
	if deploy.ExitCode(err) != 2 || deploys != 1 {
		t.Fatalf("refused job: %v (exit %d), %d deploys", err, deploy.ExitCode(err), deploys)
	}
	entries, _, _ := journal.Open(dir).Read(journal.Filter{ID: "b"})
	if len(entries) != 1 || entries[0].Outcome != "failed" || entries[0].ExitCode != 2 || !entries[0].OldServing {
		t.Fatalf("journal %+v", entries)
	}
}
