package unattended

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
)

// fakeDeploys is a RunFunc whose runs block until released, and which
// records how many ran at once per target.
type fakeDeploys struct {
	mu      sync.Mutex
	started chan Run
	release map[string]chan error // by run id
	running map[string]int
	most    map[string]int
	runs    []Run
}

func newFake() *fakeDeploys {
	return &fakeDeploys{started: make(chan Run, 100), release: map[string]chan error{}, running: map[string]int{}, most: map[string]int{}}
}

func (f *fakeDeploys) gate(id string) chan error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.release[id] == nil {
		f.release[id] = make(chan error, 1)
	}
	return f.release[id]
}

func (f *fakeDeploys) run(ctx context.Context, r Run) (*deploy.Result, error) {
	f.mu.Lock()
	f.running[r.Job.Target]++
	f.most[r.Job.Target] = max(f.most[r.Job.Target], f.running[r.Job.Target])
	f.runs = append(f.runs, r)
	f.mu.Unlock()
	f.started <- r
	var err error
	select {
	case err = <-f.gate(r.ID):
	case <-ctx.Done():
		err = ctx.Err()
	}
	f.mu.Lock()
	f.running[r.Job.Target]--
	f.mu.Unlock()
	res := &deploy.Result{Target: r.Job.Target, NewImage: r.Job.Image, Outcome: deploy.OutcomeDeployed}
	if err != nil {
		res.Outcome, res.Error = deploy.OutcomeFailed, err.Error()
	}
	return res, err
}

func (f *fakeDeploys) next(t *testing.T) Run {
	t.Helper()
	select {
	case r := <-f.started:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no run started")
		return Run{}
	}
}

func (f *fakeDeploys) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-f.started:
		t.Fatalf("unexpected run %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
}

func submit(t *testing.T, q *Queue, target, image string) Status {
	t.Helper()
	st, err := q.Submit(Job{Target: target, Image: image, Trigger: "webhook"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestQueueCoalesces(t *testing.T) {
	f := newFake()
	q := NewQueue(t.Context(), f.run, 0)
	a := submit(t, q, "web", "web:2")
	if a.State != StateRunning {
		t.Fatalf("first request %s, want running", a.State)
	}
	ra := f.next(t)
	b := submit(t, q, "web", "web:3")
	c := submit(t, q, "web", "web:4")
	d := submit(t, q, "web", "web:5")
	other := submit(t, q, "api", "api:2")
	if b.State != StateQueued || c.State != StateQueued || c.RunID != b.ID || d.RunID != b.ID {
		t.Fatalf("b %+v c %+v d %+v", b, c, d)
	}
	if other.State != StateRunning {
		t.Fatalf("another target waits behind web: %+v", other)
	}
	ro := f.next(t)
	f.none(t) // nothing else of web runs while a runs
	f.gate(ra.ID) <- nil
	rb := f.next(t)
	if rb.ID != b.ID || rb.Job.Image != "web:5" || len(rb.Requests) != 3 || rb.Requests[1] != c.ID || rb.Requests[2] != d.ID {
		t.Fatalf("follow-up run %+v: want b's run with the newest image and b, c, d", rb)
	}
	f.none(t)
	f.gate(rb.ID) <- nil
	f.gate(ro.ID) <- nil
	for _, id := range []string{a.ID, b.ID, c.ID, d.ID, other.ID} {
		st, err := q.Wait(t.Context(), id)
		if err != nil || st.State != "deployed" {
			t.Fatalf("%s: %+v %v", id, st, err)
		}
	}
	st, _ := q.Status(d.ID)
	if st.RunID != b.ID || !st.Coalesced || len(st.Requests) != 3 || st.NewImage != "web:5" {
		t.Fatalf("coalesced status %+v", st)
	}
	if f.most["web"] != 1 || f.most["api"] != 1 {
		t.Fatalf("most at once: %v", f.most)
	}
	if q.Busy("web") {
		t.Fatal("web still busy")
	}
	// Idle again: the next request runs at once.
	e := submit(t, q, "web", "web:6")
	if e.State != StateRunning {
		t.Fatalf("%+v", e)
	}
	f.gate(f.next(t).ID) <- nil
	if !q.Close(time.Second) {
		t.Fatal("Close timed out")
	}
}

func TestQueueFailureIsReported(t *testing.T) {
	f := newFake()
	q := NewQueue(t.Context(), f.run, 0)
	a := submit(t, q, "web", "web:2")
	f.gate(f.next(t).ID) <- context.DeadlineExceeded
	st, err := q.Wait(t.Context(), a.ID)
	if err != nil || st.State != "failed" || st.ExitCode != 1 || st.Error == "" {
		t.Fatalf("%+v %v", st, err)
	}
}

// Close lets a running deploy finish within the bound, drops the pending
// follow-up, and refuses new requests.
func TestQueueCloseWaitsForRunning(t *testing.T) {
	f := newFake()
	parent, cancel := context.WithCancel(t.Context())
	q := NewQueue(parent, f.run, 0)
	a := submit(t, q, "web", "web:2")
	ra := f.next(t)
	b := submit(t, q, "web", "web:3")
	cancel() // the process got SIGTERM: the run must not see it
	closed := make(chan bool)
	go func() { closed <- q.Close(5 * time.Second) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a deploy was running")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := q.Submit(Job{Target: "web"}); err != ErrClosed {
		t.Fatalf("Submit after Close: %v", err)
	}
	f.gate(ra.ID) <- nil
	if !<-closed {
		t.Fatal("Close reports the bound passed")
	}
	f.none(t)
	if st, _ := q.Status(a.ID); st.State != "deployed" {
		t.Fatalf("a: %+v", st)
	}
	if st, _ := q.Status(b.ID); st.State != StateCancelled {
		t.Fatalf("b: %+v", st)
	}
}

// Past the bound, the run's context is cancelled and Close waits for the
// run to return.
func TestQueueCloseBound(t *testing.T) {
	f := newFake()
	q := NewQueue(t.Context(), f.run, 0)
	a := submit(t, q, "web", "web:2")
	f.next(t)
	start := time.Now()
	if q.Close(200 * time.Millisecond) {
		t.Fatal("Close reports in time, but the run never finished by itself")
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Fatalf("Close took %s", d)
	}
	if st, _ := q.Status(a.ID); st.State != "failed" {
		t.Fatalf("a: %+v", st)
	}
}

func TestQueueForgetsOldStatuses(t *testing.T) {
	f := newFake()
	q := NewQueue(t.Context(), f.run, 3)
	var ids []string
	for i := range 5 {
		st := submit(t, q, "web", "web:"+itoa(i))
		f.gate(f.next(t).ID) <- nil
		if _, err := q.Wait(t.Context(), st.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.ID)
	}
	if _, ok := q.Status(ids[0]); ok {
		t.Fatal("oldest status still kept")
	}
	if _, ok := q.Status(ids[4]); !ok {
		t.Fatal("newest status forgotten")
	}
}

func itoa(i int) string { return string(rune('0' + i)) }
