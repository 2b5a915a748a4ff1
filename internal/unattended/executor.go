package unattended

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/notify"
	"github.com/baton-sh/baton/internal/redact"
)

// Metrics is what the executor reports to.
type Metrics interface {
	DeployStarted(target string)
	DeployFinished(res *deploy.Result)
}

// Executor performs a queue's runs: the pre-deploy hook, the deploy, then
// the journal, metrics, the notification and the post-deploy hook.
type Executor struct {
	Deploy  func(ctx context.Context, req deploy.Request) (*deploy.Result, error)
	Journal *journal.Journal
	Metrics Metrics                                                // optional
	Notify  *notify.Notifier                                       // optional
	Pre     *notify.Hook                                           // optional; a failure cancels the deploy
	Post    *notify.Hook                                           // optional
	LogTail func(ctx context.Context, containerID string) []string // optional: the new container's last lines
	// Admit, if set, checks again when the run starts that its job may
	// still be deployed (the container is still opted in, the image still
	// allowed): a request waits in the queue while labels can change.
	Admit func(ctx context.Context, job Job) error
	Log   *slog.Logger
}

// Run is a RunFunc.
func (x *Executor) Run(ctx context.Context, r Run) (*deploy.Result, error) {
	if x.Metrics != nil {
		x.Metrics.DeployStarted(r.Job.Target)
	}
	start := time.Now()
	res, err := x.deploy(ctx, r)
	// The request's status, the journal, the notification and the hooks
	// all show this error: no credential of a URL in it.
	err = redact.Error(err)
	if res != nil {
		res.Error = redact.Text(res.Error)
	}
	if res == nil {
		res = &deploy.Result{Target: r.Job.Target, Outcome: deploy.OutcomeFailed, StartedAt: start, Duration: time.Since(start)}
	}
	if err != nil && res.Error == "" {
		res.Error = err.Error()
	}
	// The rest runs even when the process is being stopped: the deploy
	// happened and must be journaled and reported.
	fctx := context.WithoutCancel(ctx)
	entry := journal.FromResult(res, err, r.ID, r.Requests)
	if jerr := x.Journal.Append(entry); jerr != nil {
		x.Log.Error("journal", "target", r.Job.Target, "error", jerr)
	}
	if x.Metrics != nil {
		x.Metrics.DeployFinished(res)
	}
	x.Log.Info("deploy finished", "target", r.Job.Target, "id", r.ID, "outcome", entry.Outcome,
		"image", entry.NewImage, "duration", entry.Duration.Round(time.Millisecond), "error", entry.Error)
	if x.Notify != nil && res.Outcome != deploy.OutcomeUpToDate {
		var tail []string
		switch {
		case res.Outcome == deploy.OutcomeFailed:
			tail = notify.FailureLogTail(res.Error)
		case x.LogTail != nil && res.NewID != "":
			tail = x.LogTail(fctx, res.NewID)
		}
		nctx, cancel := context.WithTimeout(fctx, time.Minute)
		if nerr := x.Notify.Send(nctx, notify.NewMessage(entry, tail)); nerr != nil {
			x.Log.Warn("notification", "target", r.Job.Target, "error", nerr)
		}
		cancel()
	}
	if x.Post != nil {
		out, herr := x.Post.Run(fctx, notify.HookEnv("post", entry))
		x.logHook(x.Post, r, out, herr)
	}
	return res, err
}

func (x *Executor) deploy(ctx context.Context, r Run) (*deploy.Result, error) {
	if x.Admit != nil {
		start := time.Now()
		if err := x.Admit(ctx, r.Job); err != nil {
			err = fmt.Errorf("%w: not deploying %s: %v", deploy.ErrInvalid, r.Job.Target, err)
			return &deploy.Result{Target: r.Job.Target, Trigger: r.Job.Trigger, Who: r.Job.Who, NewImage: r.Job.Image,
				Outcome: deploy.OutcomeFailed, OldServing: true, StartedAt: start, Duration: time.Since(start), Error: err.Error()}, err
		}
	}
	if x.Pre != nil {
		pre := journal.Entry{ID: r.ID, Requests: r.Requests, Target: r.Job.Target, Trigger: r.Job.Trigger, Who: r.Job.Who, NewImage: r.Job.Image}
		start := time.Now()
		out, err := x.Pre.Run(ctx, notify.HookEnv("pre", pre))
		x.logHook(x.Pre, r, out, err)
		if err != nil {
			err = fmt.Errorf("%w: not deploying %s: %v", deploy.ErrInvalid, r.Job.Target, err)
			return &deploy.Result{Target: r.Job.Target, Trigger: r.Job.Trigger, Who: r.Job.Who, NewImage: r.Job.Image,
				Outcome: deploy.OutcomeFailed, OldServing: true, StartedAt: start, Duration: time.Since(start), Error: err.Error()}, err
		}
	}
	return x.Deploy(ctx, deploy.Request{Target: r.Job.Target, Image: r.Job.Image, Pull: deploy.PullAlways, Trigger: r.Job.Trigger, Who: r.Job.Who})
}

func (x *Executor) logHook(h *notify.Hook, r Run, out notify.HookResult, err error) {
	if err != nil {
		x.Log.Warn("hook failed", "hook", h.Name, "target", r.Job.Target, "error", err)
		return
	}
	x.Log.Info("hook ran", "hook", h.Name, "target", r.Job.Target, "output", out.Output)
}
