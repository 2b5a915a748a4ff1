// Package unattended runs deploys that no person started: requests from baton
// watch and baton serve go through a Queue that runs one deploy per target at
// a time and coalesces what arrives meanwhile, and an Executor that wraps
// each deploy in hooks, the journal, metrics and notifications.
package unattended

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
)

// ErrClosed is returned by Submit once the queue is shutting down.
var ErrClosed = errors.New("shutting down: not accepting new deploys")

// Job is one request for a deploy.
type Job struct {
	ID      string // request id; Submit assigns one when empty
	Target  string // container name or ID
	Image   string // new image reference; "" pulls the container's own reference again
	Trigger string // watch, webhook
	Who     string
}

// Request states, as GET /v1/deploys/{id} shows them. A finished request
// has its run's outcome: deployed, up-to-date or failed.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateCancelled = "cancelled"
)

// Status is what is known about one request.
type Status struct {
	ID      string `json:"id"`
	Target  string `json:"target"`
	Image   string `json:"image,omitempty"` // what the request asked for
	Trigger string `json:"trigger,omitempty"`
	Who     string `json:"who,omitempty"`
	State   string `json:"state"`
	// RunID is the id of the deploy run that serves this request: its own id,
	// or, when it was coalesced, the id of the request whose run took it over.
	RunID string `json:"run_id,omitempty"`
	// Requests lists every request the run served (coalesced ones included).
	Requests   []string  `json:"requests,omitempty"`
	Coalesced  bool      `json:"coalesced,omitempty"`
	QueuedAt   time.Time `json:"queued_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// The run's result, once finished.
	NewImage   string `json:"new_image,omitempty"`
	NewImageID string `json:"new_image_id,omitempty"`
	OldImage   string `json:"old_image,omitempty"`
	ExitCode   int    `json:"exit_code,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Done reports whether the request has finished, one way or another.
func (s Status) Done() bool {
	return s.State != StateQueued && s.State != StateRunning
}

// Run is one deploy the queue runs: the newest job asked for it, and the ids
// of every request it serves.
type Run struct {
	ID       string
	Job      Job
	Requests []string
}

// RunFunc performs one run.
type RunFunc func(ctx context.Context, r Run) (*deploy.Result, error)

type targetState struct {
	running bool
	pending *Run // at most one follow-up run: later requests join it
}

// Queue runs at most one deploy per target at a time. A request for a target
// whose deploy is running waits as the one pending follow-up run; further
// requests join that run (the newest request's image wins) and are reported
// as served by it. The deploy itself also takes the service's lock on the
// host, which serializes it with deploys of other baton processes.
type Queue struct {
	run     RunFunc
	ctx     context.Context // the runs' context: cancelled only by Close's bound
	cancel  context.CancelFunc
	keep    int // finished statuses kept in memory
	onEvent func(string, Status)

	mu       sync.Mutex
	closed   bool
	targets  map[string]*targetState
	statuses map[string]*Status
	order    []string // status ids, oldest first
	wg       sync.WaitGroup
	changed  chan struct{} // closed and replaced on every status change
}

// NewQueue returns a queue whose runs call run. Runs get a context that
// ignores parent's cancellation (a signal to the process must not abort a
// deploy half-way) and is cancelled only when Close's bound passes. keep
// bounds how many finished requests are remembered (default 1000).
func NewQueue(parent context.Context, run RunFunc, keep int) *Queue {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	if keep <= 0 {
		keep = 1000
	}
	return &Queue{run: run, ctx: ctx, cancel: cancel, keep: keep,
		targets: map[string]*targetState{}, statuses: map[string]*Status{}, changed: make(chan struct{})}
}

// OnEvent sets a function told of every request's state changes (for logs).
// Set it before the first Submit.
func (q *Queue) OnEvent(f func(event string, s Status)) { q.onEvent = f }

// Submit queues a job and returns its status right away.
func (q *Queue) Submit(job Job) (Status, error) {
	if job.ID == "" {
		job.ID = NewID()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return Status{}, ErrClosed
	}
	st := &Status{ID: job.ID, Target: job.Target, Image: job.Image, Trigger: job.Trigger, Who: job.Who, QueuedAt: time.Now(), State: StateQueued}
	q.remember(st)
	ts := q.targets[job.Target]
	if ts == nil {
		ts = &targetState{}
		q.targets[job.Target] = ts
	}
	switch {
	case !ts.running:
		ts.running = true
		q.start(ts, &Run{ID: job.ID, Job: job, Requests: []string{job.ID}})
	case ts.pending == nil:
		ts.pending = &Run{ID: job.ID, Job: job, Requests: []string{job.ID}}
		st.RunID = job.ID
		q.notify("queued", *st)
	default:
		p := ts.pending
		p.Job = Job{ID: p.ID, Target: job.Target, Image: job.Image, Trigger: job.Trigger, Who: job.Who}
		p.Requests = append(p.Requests, job.ID)
		for _, id := range p.Requests {
			if s := q.statuses[id]; s != nil {
				s.RunID, s.Requests, s.Coalesced = p.ID, append([]string(nil), p.Requests...), len(p.Requests) > 1
			}
		}
		q.notify("coalesced", *st)
	}
	q.broadcast()
	return *st, nil
}

// start runs r in a goroutine; q.mu is held.
func (q *Queue) start(ts *targetState, r *Run) {
	now := time.Now()
	for _, id := range r.Requests {
		if s := q.statuses[id]; s != nil {
			s.State, s.StartedAt, s.RunID = StateRunning, now, r.ID
			s.Requests, s.Coalesced = append([]string(nil), r.Requests...), len(r.Requests) > 1
		}
	}
	if s := q.statuses[r.ID]; s != nil {
		q.notify("started", *s)
	}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		res, err := q.run(q.ctx, *r)
		q.finish(ts, r, res, err)
	}()
}

func (q *Queue) finish(ts *targetState, r *Run, res *deploy.Result, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	for _, id := range r.Requests {
		s := q.statuses[id]
		if s == nil {
			continue
		}
		s.FinishedAt = now
		s.State = string(deploy.OutcomeFailed)
		if res != nil {
			if res.Outcome != "" {
				s.State = string(res.Outcome)
			}
			s.NewImage, s.NewImageID, s.OldImage, s.Error = res.NewImage, res.NewImageID, res.OldImage, res.Error
		}
		s.ExitCode = deploy.ExitCode(err)
		if err != nil && s.Error == "" {
			s.Error = err.Error()
		}
		if err == nil && s.State == string(deploy.OutcomeFailed) && s.ExitCode == 0 {
			s.ExitCode = 1
		}
	}
	if s := q.statuses[r.ID]; s != nil {
		q.notify("finished", *s)
	}
	next := ts.pending
	ts.pending = nil
	switch {
	case next != nil && !q.closed:
		q.start(ts, next)
	default:
		if next != nil {
			q.cancelRun(next)
		}
		ts.running = false
		delete(q.targets, r.Job.Target)
	}
	q.broadcast()
}

// cancelRun marks a pending run's requests cancelled; q.mu is held.
func (q *Queue) cancelRun(r *Run) {
	now := time.Now()
	for _, id := range r.Requests {
		if s := q.statuses[id]; s != nil {
			s.State, s.FinishedAt, s.Error = StateCancelled, now, "baton was shutting down before this deploy started"
		}
	}
}

// remember stores a status, forgetting the oldest finished ones beyond keep;
// q.mu is held.
func (q *Queue) remember(st *Status) {
	q.statuses[st.ID] = st
	q.order = append(q.order, st.ID)
	for len(q.order) > q.keep {
		old := q.statuses[q.order[0]]
		if old != nil && !old.Done() {
			break
		}
		delete(q.statuses, q.order[0])
		q.order = q.order[1:]
	}
}

func (q *Queue) notify(event string, s Status) {
	if q.onEvent != nil {
		q.onEvent(event, s)
	}
}

// broadcast wakes Wait callers; q.mu is held.
func (q *Queue) broadcast() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Status returns what is known about request id.
func (q *Queue) Status(id string) (Status, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	s, ok := q.statuses[id]
	if !ok {
		return Status{}, false
	}
	return *s, true
}

// Wait waits until request id has finished, or ctx ends.
func (q *Queue) Wait(ctx context.Context, id string) (Status, error) {
	for {
		q.mu.Lock()
		s, ok := q.statuses[id]
		var st Status
		if ok {
			st = *s
		}
		ch := q.changed
		q.mu.Unlock()
		if !ok {
			return Status{}, errors.New("unknown request " + id)
		}
		if st.Done() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-ch:
		}
	}
}

// Busy reports whether a deploy of target is running or pending.
func (q *Queue) Busy(target string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.targets[target] != nil
}

// Close stops accepting requests and drops pending follow-up runs, then
// waits for running deploys. If they are not done within bound, their
// context is cancelled (a deploy then rolls back if it had not stopped the old
// container yet, or completes if it had) and Close waits for them to return.
// It reports whether every run finished within the bound.
func (q *Queue) Close(bound time.Duration) bool {
	q.mu.Lock()
	q.closed = true
	for _, ts := range q.targets {
		if ts.pending != nil {
			q.cancelRun(ts.pending)
			ts.pending = nil
		}
	}
	q.broadcast()
	q.mu.Unlock()
	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-done:
		q.cancel()
		return true
	case <-timer.C:
	}
	q.cancel()
	<-done
	return false
}

// NewID returns a random request id.
func NewID() string {
	var b [8]byte
	// crypto/rand.Read never returns an error (it crashes the program instead).
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
