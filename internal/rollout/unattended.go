package rollout

import (
	"context"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
)

// AsDeploy sums a rollout up as one deploy result, for callers that handle
// one result per request (watch and serve: their journal entry, metrics,
// notification and hooks). Each host's own deploy is in that host's
// journal already; this is the rollout as one run: deployed when any host
// changed and none failed, up to date when none needed a change, failed
// otherwise, with the rollout's summary as its note (and error).
func (r *Result) AsDeploy(req deploy.Request, started time.Time) *deploy.Result {
	out := &deploy.Result{
		Target: r.Service, Service: r.Service, Container: r.Service, Trigger: req.Trigger, Who: req.Who,
		Traffic: "relay", Duration: r.Duration, ExitCode: r.ExitCode, StartedAt: started,
		Notes: []string{r.Summary}, OldServing: r.ExitCode != 3,
	}
	changed, failed := false, r.ExitCode != 0
	for _, h := range r.Hosts {
		switch h.Status {
		case StatusDeployed, StatusRolledBack:
			changed = true
		case StatusFailed, StatusRollbackFailed:
			failed = true
		}
		// The images of the first host that got as far as a deploy.
		if d := h.Deploy; d != nil && out.NewImage == "" {
			out.OldImage, out.OldImageID, out.NewImage, out.NewImageID = d.OldImage, d.OldImageID, d.NewImage, d.NewImageID
		}
	}
	if out.NewImage == "" {
		out.NewImage = req.Image
	}
	switch {
	case failed:
		out.Outcome = deploy.OutcomeFailed
		out.Error = r.Error
		if out.Error == "" {
			out.Error = r.Summary
		}
		if out.ExitCode == 0 {
			out.ExitCode = 1
		}
	case changed:
		out.Outcome = deploy.OutcomeDeployed
	default:
		out.Outcome = deploy.OutcomeUpToDate
	}
	return out
}

// DeployFunc is the rollout as watch and serve run a deploy: one request,
// one run across every host (one host at a time, under the rollout lock),
// one result. opts gives the rollout's choices; each request gives the
// target, image, trigger and who.
func (x *Executor) DeployFunc(opts Options) func(ctx context.Context, req deploy.Request) (*deploy.Result, error) {
	return func(ctx context.Context, req deploy.Request) (*deploy.Result, error) {
		started := time.Now()
		o := opts
		o.Kind = KindDeploy
		o.Request = req
		res, err := x.Run(ctx, o)
		return res.AsDeploy(req, started), err
	}
}
