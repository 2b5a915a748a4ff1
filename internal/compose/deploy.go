package compose

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/baton-sh/baton/internal/deploy"
)

// Deployer is what deploys one container; *deploy.Deployer satisfies it.
type Deployer interface {
	Deploy(ctx context.Context, req deploy.Request) (*deploy.Result, error)
}

// ServiceResult is how one service fared in a compose deploy.
type ServiceResult struct {
	Service  string           `json:"service"`
	Outcome  string           `json:"outcome"` // deployed, up-to-date, skipped, failed, not-run, dry-run
	Detail   string           `json:"detail,omitempty"`
	Replicas []*deploy.Result `json:"replicas,omitempty"`
}

// Outcomes of a service in a compose deploy.
const (
	OutcomeDeployed = "deployed"
	OutcomeUpToDate = "up-to-date"
	OutcomeSkipped  = "skipped"
	OutcomeFailed   = "failed"
	OutcomeNotRun   = "not-run"
	OutcomeDryRun   = "dry-run" // planned only; see each replica's plan
	OutcomeCanary   = "canary"  // a replica's canary waits for baton promote or abort
)

// DeployService replaces every running replica of service, one at a time,
// each gated on health, so the service keeps its capacity throughout. It
// stops at the first replica that fails (that one's old container keeps
// serving; the others are left as they are).
func DeployService(ctx context.Context, d Deployer, eng Engine, p *Project, cfg *Config, service string, req deploy.Request, report func(string)) (ServiceResult, error) {
	res := ServiceResult{Service: service}
	svc, ok := cfg.Services[service]
	if !ok {
		return res, classify(deploy.ErrNotFound, "service %q is not in %s", service, strings.Join(p.Files, ", "))
	}
	if err := checkNetworkMode(service, svc); err != nil {
		return res, err
	}
	if req.Image != "" {
		return res, classify(deploy.ErrInvalid, "--image cannot be used with a compose service: the image comes from the compose file (change it there, e.g. image: repo:${TAG})")
	}
	replicas, err := p.Replicas(ctx, eng, service)
	if err != nil {
		return res, err
	}
	var running []string
	for _, c := range replicas {
		if c.State == "running" {
			running = append(running, c.ID)
		}
	}
	if len(running) == 0 {
		return res, classify(deploy.ErrNotRunning, "service %s of project %s has no running container; start it first (%s -p %s up -d %s)", service, p.Name, strings.Join(p.Tool.Argv, " "), p.Name, service)
	}
	hashNow, err := p.Hash(ctx, service)
	if err != nil {
		return res, classify(deploy.ErrInvalid, "%v", err)
	}
	res.Outcome = OutcomeUpToDate
	redeploy := 0 // replicas whose dry-run plan redeploys
	for i, id := range running {
		c, err := eng.ContainerInspect(ctx, id)
		if err != nil {
			return res, err
		}
		changed := c.Config.Labels[LabelConfigHash] != hashNow
		r := req
		r.Target = id
		r.Image = svc.Image
		r.Spec = p.specFor(eng, service, svc, changed, req.DryRun, report)
		if changed {
			r.Changed = "the compose file changed"
		}
		if len(running) > 1 {
			report(fmt.Sprintf("%s: replica %d of %d (%s)", service, i+1, len(running), strings.TrimPrefix(c.Name, "/")))
		}
		out, err := d.Deploy(ctx, r)
		res.Replicas = append(res.Replicas, out)
		if err != nil {
			res.Outcome = OutcomeFailed
			res.Detail = err.Error()
			if i > 0 {
				res.Detail += fmt.Sprintf(" (%d of %d replicas were deployed before it)", i, len(running))
			}
			return res, err
		}
		switch out.Outcome {
		case deploy.OutcomeCanary:
			// One replica is the canary of the service: the others wait
			// for the decision, which a later deploy carries to them.
			res.Outcome = OutcomeCanary
			res.Detail = fmt.Sprintf("replica %s is a canary: baton promote %s or baton abort %s, then deploy again for the other %d replicas",
				out.Container, out.Container, out.Container, len(running)-i-1)
			return res, nil
		case deploy.OutcomeDeployed:
			res.Outcome = OutcomeDeployed
		case deploy.OutcomeDryRun:
			res.Outcome = OutcomeDryRun
			if out.Plan != nil && !out.Plan.UpToDate {
				redeploy++
			}
		}
	}
	if res.Outcome == OutcomeDryRun {
		// Each replica's plan is the deploy's own decision; sum them up.
		res.Detail = fmt.Sprintf("%d of %d replicas would be redeployed", redeploy, len(running))
		if redeploy == 0 {
			res.Detail = "up to date: a deploy would change nothing"
		}
	}
	return res, nil
}

// DeployAll deploys every service of the project whose image or
// configuration changed, in depends_on order. Unchanged services are left
// alone. The first service that fails stops the run; those after it are not
// run. Stateful services (databases) and services in another's network
// namespace are skipped with the reason: they are not baton's to replace.
func DeployAll(ctx context.Context, d Deployer, eng Engine, p *Project, cfg *Config, req deploy.Request, report func(string)) ([]ServiceResult, error) {
	order, err := Order(cfg)
	if err != nil {
		return nil, classify(deploy.ErrInvalid, "%v", err)
	}
	var out []ServiceResult
	var firstErr error
	for _, name := range order {
		if firstErr != nil {
			out = append(out, ServiceResult{Service: name, Outcome: OutcomeNotRun, Detail: "an earlier service failed"})
			continue
		}
		svc := cfg.Services[name]
		replicas, err := p.Replicas(ctx, eng, name)
		if err != nil {
			return out, err
		}
		if len(replicas) == 0 {
			out = append(out, ServiceResult{Service: name, Outcome: OutcomeSkipped, Detail: "no container (not up, or a profile/one-off service)"})
			continue
		}
		if err := checkNetworkMode(name, svc); err != nil {
			out = append(out, ServiceResult{Service: name, Outcome: OutcomeSkipped, Detail: err.Error()})
			continue
		}
		report(fmt.Sprintf("service %s", name))
		res, err := DeployService(ctx, d, eng, p, cfg, name, req, report)
		switch {
		case err == nil:
		case errors.Is(err, deploy.ErrUnsupported):
			res = ServiceResult{Service: name, Outcome: OutcomeSkipped, Detail: err.Error()}
		default:
			firstErr = err
		}
		out = append(out, res)
	}
	return out, firstErr
}

// checkNetworkMode refuses services that share another namespace's ports.
func checkNetworkMode(service string, svc ServiceConfig) error {
	switch {
	case svc.NetworkMode == "host":
		return classify(deploy.ErrUnsupported, "service %s uses network_mode: host: a second copy would need the same host ports at the same time, so baton cannot replace it without downtime; use a bridge network with ports: or nginx in front", service)
	case strings.HasPrefix(svc.NetworkMode, "service:") || strings.HasPrefix(svc.NetworkMode, "container:"):
		return classify(deploy.ErrUnsupported, "service %s uses network_mode: %s: it shares that container's network namespace, where a second copy could not bind its port, so baton cannot replace it without downtime", service, svc.NetworkMode)
	}
	return nil
}
