package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
)

// Engines is what a rollout needs from each host: its facts, and the usual
// single-host deploy and rollback there (with that host's engine, state
// directory and host lock).
type Engines interface {
	Facts(ctx context.Context, h Host, target string) HostFacts
	Deploy(ctx context.Context, h Host, req deploy.Request) (*deploy.Result, error)
	Rollback(ctx context.Context, h Host, req deploy.Request) (*deploy.Result, error)
}

// Kind says whether a rollout deploys a new image or rolls each host back.
type Kind string

const (
	KindDeploy   Kind = "deploy"
	KindRollback Kind = "rollback"
)

// Options are a rollout's choices.
type Options struct {
	Kind              Kind
	Down              DownPolicy
	RollbackOnFailure bool
	// Request is what every host's deploy gets (target, image, flags, dry
	// run); the host's own settings come from its state directory.
	Request deploy.Request
}

// Executor walks a rollout plan.
type Executor struct {
	Hosts   []Host
	Engines Engines
	// Lock takes the rollout lock of a service, so that two rollouts of one
	// service never interleave (each host's deploy also takes its host
	// lock).
	Lock func(ctx context.Context, service string) (unlock func(), err error)
	// Note receives one line of progress per host step.
	Note func(host, msg string)
}

// HostResult is one host's part of a rollout.
type HostResult struct {
	Host     string         `json:"host"`
	Status   Status         `json:"status"`
	ExitCode int            `json:"exit_code"`
	Error    string         `json:"error,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Duration time.Duration  `json:"duration_ns"`
	Deploy   *deploy.Result `json:"deploy,omitempty"`
	Rollback *deploy.Result `json:"rollback,omitempty"`
}

// Result is a whole rollout.
type Result struct {
	Service  string        `json:"service"`
	Kind     Kind          `json:"kind"`
	Plan     *Plan         `json:"plan,omitempty"`
	Hosts    []HostResult  `json:"hosts"`
	ExitCode int           `json:"exit_code"`
	Summary  string        `json:"summary"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Run rolls the service out host by host. The returned error is the
// rollout's failure (the result says per host what happened); its exit code
// is Result.ExitCode.
func (x *Executor) Run(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	target := opts.Request.Target
	res := &Result{Service: target, Kind: opts.Kind}
	defer func() { res.Duration = time.Since(start) }()
	note := x.Note
	if note == nil {
		note = func(string, string) {}
	}
	if x.Lock != nil && !opts.Request.DryRun {
		unlock, err := x.Lock(ctx, target)
		if err != nil {
			return x.refused(res, err)
		}
		defer unlock()
	}
	facts := make([]HostFacts, len(x.Hosts))
	byName := map[string]Host{}
	for i, h := range x.Hosts {
		facts[i] = x.Engines.Facts(ctx, h, target)
		byName[h.Name] = h
	}
	plan, err := Decide(target, facts, opts.Down)
	if err != nil {
		return x.refused(res, err)
	}
	res.Plan = &plan
	var done []Status
	var failed error
	for i, step := range plan.Steps {
		hr := HostResult{Host: step.Host}
		if step.Action == ActionSkip {
			hr.Status, hr.Reason = StatusSkipped, step.Reason
			note(step.Host, "skipped: "+step.Reason)
		} else {
			note(step.Host, fmt.Sprintf("%s (%d of %d)", opts.Kind, i+1, len(plan.Steps)))
			t0 := time.Now()
			var r *deploy.Result
			var err error
			if opts.Kind == KindRollback {
				r, err = x.Engines.Rollback(ctx, byName[step.Host], opts.Request)
			} else {
				r, err = x.Engines.Deploy(ctx, byName[step.Host], opts.Request)
			}
			hr.Duration, hr.Deploy = time.Since(t0), r
			hr.Status, hr.ExitCode = hostStatus(r, err, opts.Request.DryRun)
			if err != nil {
				hr.Error = err.Error()
				failed = fmt.Errorf("host %s: %w", step.Host, err)
			}
			note(step.Host, string(hr.Status))
		}
		res.Hosts = append(res.Hosts, hr)
		done = append(done, hr.Status)
		if opts.Request.DryRun {
			continue // every host's plan is shown, whatever one says
		}
		d := AfterHost(plan, done, opts.RollbackOnFailure && opts.Kind == KindDeploy)
		if d.Continue {
			continue
		}
		for _, later := range plan.Steps[i+1:] {
			res.Hosts = append(res.Hosts, HostResult{Host: later.Host, Status: StatusNotRun, Reason: "the rollout stopped at host " + step.Host})
		}
		x.rollBack(ctx, res, d.RollBack, byName, opts, note)
		break
	}
	codes := make([]int, len(res.Hosts))
	for i, h := range res.Hosts {
		codes[i] = h.ExitCode
	}
	res.ExitCode = WorstExit(codes...)
	res.Summary = summary(res)
	if failed != nil {
		res.Error = failed.Error()
		return res, &Error{Code: res.ExitCode, Err: fmt.Errorf("%s: %w", res.Summary, failed)}
	}
	return res, nil
}

// rollBack returns the hosts this rollout changed to their old image, the
// most recent first.
func (x *Executor) rollBack(ctx context.Context, res *Result, hosts []string, byName map[string]Host, opts Options, note func(string, string)) {
	for _, name := range hosts {
		note(name, "rolling back to the old image (--rollback-on-failure)")
		req := deploy.Request{Target: opts.Request.Target, Trigger: opts.Request.Trigger, PullProgress: opts.Request.PullProgress}
		r, err := x.Engines.Rollback(ctx, byName[name], req)
		for i := range res.Hosts {
			if res.Hosts[i].Host != name {
				continue
			}
			res.Hosts[i].Rollback = r
			if err != nil {
				res.Hosts[i].Status = StatusRollbackFailed
				res.Hosts[i].ExitCode = deploy.ExitCode(err)
				res.Hosts[i].Error = err.Error()
			} else {
				res.Hosts[i].Status = StatusRolledBack
			}
			note(name, string(res.Hosts[i].Status))
		}
	}
}

func (x *Executor) refused(res *Result, err error) (*Result, error) {
	res.ExitCode = deploy.ExitCode(err)
	res.Error = err.Error()
	res.Summary = "nothing changed: " + err.Error()
	for _, h := range x.Hosts {
		res.Hosts = append(res.Hosts, HostResult{Host: h.Name, Status: StatusNotRun})
	}
	return res, &Error{Code: res.ExitCode, Err: err}
}

// hostStatus maps one host's deploy result to its status and exit code.
func hostStatus(r *deploy.Result, err error, dryRun bool) (Status, int) {
	switch {
	case err != nil:
		return StatusFailed, deploy.ExitCode(err)
	case dryRun:
		return StatusPlanned, 0
	case r != nil && r.Outcome == deploy.OutcomeUpToDate:
		return StatusUpToDate, 0
	case r != nil && r.Outcome == deploy.OutcomeCanary:
		// A canary left waiting (a recorded --canary without a duration)
		// is not the new version yet: the rollout stops here.
		return StatusFailed, 2
	default:
		return StatusDeployed, 0
	}
}

// summary says in one line where the rollout left the service.
func summary(res *Result) string {
	by := map[Status][]string{}
	for _, h := range res.Hosts {
		by[h.Status] = append(by[h.Status], h.Host)
	}
	var parts []string
	add := func(st Status, what string) {
		if len(by[st]) > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", hostsWord(by[st]), what))
		}
	}
	add(StatusDeployed, "on the new image")
	add(StatusUpToDate, "already up to date")
	add(StatusPlanned, "planned")
	add(StatusRolledBack, "rolled back to the old image")
	add(StatusRollbackFailed, "failed to roll back (see each host's error)")
	add(StatusFailed, "failed")
	add(StatusNotRun, "untouched, on the old image")
	add(StatusSkipped, "skipped (engine down)")
	head := string(res.Kind) + " of " + res.Service
	if len(by[StatusFailed]) > 0 {
		head += " stopped at host " + by[StatusFailed][0]
	} else {
		head += " done"
	}
	return head + ": " + strings.Join(parts, "; ")
}

func hostsWord(names []string) string {
	if len(names) == 1 {
		return "host " + names[0]
	}
	return "hosts " + strings.Join(names, ", ")
}

// Error is a failed rollout with its exit code (the worst host's).
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ExitCode is err's exit code: a rollout's own, else deploy's.
func ExitCode(err error) int {
	var re *Error
	if errors.As(err, &re) {
		return re.Code
	}
	return deploy.ExitCode(err)
}
