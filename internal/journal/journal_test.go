package journal

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
)

func TestFromResult(t *testing.T) {
	start := time.Now().Add(-5 * time.Second)
	res := &deploy.Result{Target: "web", Service: "web", Container: "web", Trigger: "cli", Who: "alice", Outcome: deploy.OutcomeFailed,
		OldImage: "a:1", NewImage: "a:2", StartedAt: start, Duration: 5 * time.Second, Error: "boom", OldServing: true, ExitCode: 1,
		Phases: []deploy.PhaseTime{{Phase: deploy.PhaseResolve, Duration: time.Second}, {Phase: deploy.PhasePull, Duration: time.Second}}}
	e := FromResult(res, nil, "id1", nil)
	if e.ExitCode != 1 || e.Waited != time.Second || !e.FinishedAt.Equal(start.Add(5*time.Second)) || e.Error != "boom" || e.Host == "" {
		t.Fatalf("%+v", e)
	}
	res.OldServing, res.ExitCode = false, 3
	if e := FromResult(res, nil, "id", nil); e.ExitCode != 3 {
		t.Fatalf("old container stopped: exit %d", e.ExitCode)
	}
	if e := FromResult(res, deploy.ErrInvalid, "id", nil); e.ExitCode != 2 {
		t.Fatalf("with the error: exit %d", e.ExitCode)
	}
	ok := &deploy.Result{Target: "web", Outcome: deploy.OutcomeDeployed, StartedAt: start, Duration: time.Second}
	if e := FromResult(ok, nil, "id", []string{"r1"}); e.ExitCode != 0 || e.Outcome != "deployed" || e.Requests[0] != "r1" {
		t.Fatalf("%+v", e)
	}
}

func TestAppendReadFilter(t *testing.T) {
	j := Open(t.TempDir())
	if got, _, err := j.Read(Filter{}); err != nil || len(got) != 0 {
		t.Fatalf("missing journal: %v %v", got, err)
	}
	for i, target := range []string{"web", "api", "web", "web"} {
		e := Entry{ID: "e" + strconv.Itoa(i), Target: target, Container: target, Outcome: "deployed", Requests: []string{"r" + strconv.Itoa(i), "x" + strconv.Itoa(i)}}
		if err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	got, _, _ := j.Read(Filter{Target: "web"})
	if len(got) != 3 || got[0].ID != "e0" || got[2].ID != "e3" {
		t.Fatalf("web: %+v", got)
	}
	got, _, _ = j.Read(Filter{Target: "web", Limit: 2})
	if len(got) != 2 || got[0].ID != "e2" || got[1].ID != "e3" {
		t.Fatalf("web, limit 2: %+v", got)
	}
	got, _, _ = j.Read(Filter{ID: "x1"})
	if len(got) != 1 || got[0].ID != "e1" {
		t.Fatalf("by request id: %+v", got)
	}
}

// A torn last line (a writer that died mid-record) is skipped, and the next
// record still starts on a line of its own.
func TestTornLine(t *testing.T) {
	dir := t.TempDir()
	j := Open(dir)
	if err := j.Append(Entry{ID: "a", Target: "web"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(j.Path(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"id":"torn","tar`)
	_ = f.Close()
	if err := j.Append(Entry{ID: "b", Target: "web"}); err != nil {
		t.Fatal(err)
	}
	got, skipped, err := j.Read(Filter{})
	if err != nil || skipped != 1 || len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Fatalf("got %+v skipped %d err %v", got, skipped, err)
	}
}

// When BATON_TEST_JOURNAL is set, the test binary appends records as fast
// as it can: a helper for the multi-process test.
func TestMain(m *testing.M) {
	if spec := os.Getenv("BATON_TEST_JOURNAL"); spec != "" {
		dir, who, _ := strings.Cut(spec, "|")
		j := Open(dir)
		for i := range 200 {
			if err := j.Append(Entry{ID: who + strconv.Itoa(i), Target: "web", Who: who, Error: strings.Repeat("x", 5000)}); err != nil {
				os.Exit(3)
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Several processes appending at once never interleave their records.
func TestConcurrentAppendsFromProcesses(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, who := range []string{"p1", "p2", "p3", "p4"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "BATON_TEST_JOURNAL="+dir+"|"+who)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- errors.New(who + ": " + err.Error() + ": " + string(out))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, skipped, err := Open(dir).Read(Filter{})
	if err != nil || skipped != 0 || len(got) != 800 {
		t.Fatalf("%d entries, %d damaged, err %v", len(got), skipped, err)
	}
}

// The journal is 0600, also when an earlier version made it 0644, and an
// error that quotes a URL with credentials is journaled without them.
func TestJournalModeAndRedaction(t *testing.T) {
	dir := t.TempDir()
	j := Open(dir)
	if err := os.WriteFile(j.Path(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(j.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	e := Entry{ID: "a", Target: "web", Outcome: "failed", Error: `notify: Post "https://bot:hunter2@chat.example/x?token=t0k": refused`}
	if err := j.Append(e); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %04o, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), "t0k") || !strings.Contains(string(raw), "chat.example") {
		t.Fatalf("journal line: %s", raw)
	}
}
