package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/docker/docker/errdefs"
	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/swarmdeploy"
	"github.com/baton-sh/baton/internal/unattended"
	"github.com/baton-sh/baton/internal/webhook"
)

func newServeCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "serve",
		Usage: "accept authenticated webhooks (CI, Docker Hub, registry notifications) that deploy opted-in containers",
		Description: `POST /v1/deploy/CONTAINER deploys CONTAINER and answers 202 with a request id;
GET /v1/deploys/ID says how it went; GET /metrics serves Prometheus metrics.

A request is authenticated by "Authorization: Bearer TOKEN" or signed:
"X-Baton-Timestamp: UNIX-SECONDS" and "X-Baton-Signature: v1=HEX", HEX the HMAC-SHA256
under the secret of METHOD "\n" PATH "\n" TIMESTAMP "\n" BODY. A timestamp more than
5 minutes off is refused, and each signature is accepted once. A body-only HMAC
("sha256=HEX", also as X-Hub-Signature-256) counts only on registry notifications.
The token and the secret (16 bytes at least) come from files (--token-file,
--secret-file) or from the environment (BATON_WEBHOOK_TOKEN, BATON_WEBHOOK_SECRET),
never from a flag's value. GET /metrics needs the token too (or use --metrics-listen).

Bodies: {"image": "REF"} or {"tag": "TAG"} or nothing (pull the container's own tag
again); a Docker Hub webhook; a registry notification (a push of the container's
repository deploys the pushed tag; every other event is answered 200 and ignored).
An image outside the container's own repository is refused (403) unless
--allow-repository allows it.

One deploy per container at a time: requests that arrive while one runs are coalesced
into one follow-up deploy. On SIGTERM or SIGINT, baton serve stops accepting requests
and waits for a running deploy to finish (up to --shutdown-timeout), then exits 0.`,
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "listen", Value: "127.0.0.1:9090", Usage: "`ADDR` to listen on (put a TLS proxy in front to expose it beyond this host)"},
			&ucli.StringFlag{Name: "token-file", Usage: "bearer token in `FILE` (or set BATON_WEBHOOK_TOKEN)"},
			&ucli.StringFlag{Name: "secret-file", Usage: "HMAC-SHA256 secret in `FILE` (or set BATON_WEBHOOK_SECRET)"},
			&ucli.BoolFlag{Name: "query-token", Usage: "also accept the token as ?token=TOKEN, for senders that cannot set headers (Docker Hub); it may end up in proxy logs"},
			&ucli.StringSliceFlag{Name: "allow-repository", EnvVars: []string{"BATON_ALLOW_REPOSITORIES"}, Usage: "also let a webhook deploy images of repositories matching `PATTERN` (host/path, * within one component: registry.example/shop/*); repeatable. Without it, only tags of the container's own repository"},
			&ucli.IntFlag{Name: "max-body", Value: webhook.DefaultMaxBody, Usage: "largest request body in `BYTES`"},
		}, unattendedFlags()...),
		Action: func(c *ucli.Context) error {
			if c.NArg() != 0 {
				return usageErr("serve takes no arguments, got %d", c.NArg())
			}
			return runServe(c)
		},
	}
}

func runServe(c *ucli.Context) error {
	token, err := readSecret(c.String("token-file"), "BATON_WEBHOOK_TOKEN")
	if err != nil {
		return usageErr("--token-file: %v", err)
	}
	secret, err := readSecret(c.String("secret-file"), "BATON_WEBHOOK_SECRET")
	if err != nil {
		return usageErr("--secret-file: %v", err)
	}
	auth := &webhook.Auth{Token: token, Secret: secret, QueryToken: c.Bool("query-token"), Replay: webhook.NewReplayCache(0)}
	if !auth.Configured() {
		return usageErr("baton serve needs a token or a secret: --token-file, --secret-file, BATON_WEBHOOK_TOKEN or BATON_WEBHOOK_SECRET")
	}
	if n := len(token); n > 0 && n < webhook.MinSecretLen {
		return usageErr("the webhook token is %d bytes, want at least %d: make one with head -c 32 /dev/urandom | base64", n, webhook.MinSecretLen)
	}
	if n := len(secret); n > 0 && n < webhook.MinSecretLen {
		return usageErr("the webhook secret is %d bytes, want at least %d: make one with head -c 32 /dev/urandom | base64", n, webhook.MinSecretLen)
	}
	repos, err := webhook.NewRepoPolicy(c.StringSlice("allow-repository"))
	if err != nil {
		return usageErr("--allow-repository: %v", err)
	}
	if auth.QueryToken && len(token) == 0 {
		return usageErr("--query-token needs a token (--token-file or BATON_WEBHOOK_TOKEN)")
	}
	if c.Int("max-body") <= 0 {
		return usageErr("--max-body must be more than 0")
	}
	log := longRunningLogger(c)
	u, err := newUnattended(c, log)
	if err != nil {
		return err
	}
	defer u.close()
	u.repos = repos
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return usageErr("--listen %s: %v", c.String("listen"), err)
	}
	if !isLoopback(ln.Addr()) {
		log.Warn("listening beyond this host: put TLS in front of baton serve, or bind it to 127.0.0.1", "addr", ln.Addr().String())
	}
	srv := &webhook.Server{
		Auth: auth, MaxBody: int64(c.Int("max-body")), Repos: repos,
		Resolve: func(ctx context.Context, target string) (string, error) { return u.resolve(ctx, target) },
		Submit:  u.queue.Submit,
		Status:  u.queue.Status,
		History: u.history,
		Metrics: u.metrics.Handler(),
		Observe: u.metrics.Webhook,
		Log:     log,
	}
	log.Info("serving webhooks", "addr", ln.Addr().String(), "all", u.sel.All, "scope", u.sel.Scope, "allow_repositories", strings.Join(repos.Patterns(), ","))
	serveErr := webhook.Serve(c.Context, ln, srv.Handler(), 10*time.Second)
	err = u.shutdown()
	if serveErr != nil {
		return serveErr
	}
	return err
}

// resolve checks that target may be deployed by a webhook and returns the
// image reference its container runs.
func (u *unattendedRun) resolve(ctx context.Context, target string) (string, error) {
	ctr, err := u.eng.ContainerInspect(ctx, target)
	if errdefs.IsNotFound(err) {
		if u.multi {
			// A rollout across hosts deploys containers, not services.
			return "", fmt.Errorf("%w: %s (across hosts only containers are deployed)", webhook.ErrNotFound, target)
		}
		return u.resolveService(ctx, target)
	}
	if err != nil {
		return "", fmt.Errorf("inspecting container %s: %w", target, err)
	}
	if svc, task := deploy.SwarmTask(ctr); task {
		return "", fmt.Errorf("%w: container %s is a task of Swarm service %s; name the service", webhook.ErrNotEnabled, target, svc)
	}
	// An image's own labels never opt its containers in.
	own, _, err := deploy.ContainerOwnLabels(ctx, u.eng, ctr)
	if err != nil {
		return "", fmt.Errorf("container %s: %w", target, err)
	}
	if err := u.sel.Allows(own); err != nil {
		return "", fmt.Errorf("%w: container %s: %v", webhook.ErrNotEnabled, target, err)
	}
	return ctr.Config.Image, nil
}

// resolveService is resolve for a Swarm service: opted in by the
// service's own labels (the operator's), never its image's.
func (u *unattendedRun) resolveService(ctx context.Context, target string) (string, error) {
	svc, found, err := swarmdeploy.FindService(ctx, u.eng, target)
	switch {
	case err != nil:
		return "", err
	case !found:
		return "", fmt.Errorf("%w: %s", webhook.ErrNotFound, target)
	}
	if err := u.sel.Allows(svc.Spec.Labels); err != nil {
		return "", fmt.Errorf("%w: service %s: %v", webhook.ErrNotEnabled, target, err)
	}
	ref := svc.Spec.TaskTemplate.ContainerSpec.Image
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	return ref, nil
}

// history finds a request in the journal (a deploy from before a restart).
func (u *unattendedRun) history(id string) (unattended.Status, bool) {
	entries, _, err := u.journal.Read(journal.Filter{ID: id, Limit: 1})
	if err != nil || len(entries) == 0 {
		if err != nil && !errors.Is(err, context.Canceled) {
			u.log.Warn("journal", "error", err)
		}
		return unattended.Status{}, false
	}
	e := entries[0]
	return unattended.Status{
		ID: id, Target: e.Target, Trigger: e.Trigger, Who: e.Who, State: e.Outcome, RunID: e.ID,
		Requests: e.Requests, Coalesced: len(e.Requests) > 1, StartedAt: e.StartedAt, FinishedAt: e.FinishedAt,
		NewImage: e.NewImage, NewImageID: e.NewImageID, OldImage: e.OldImage, ExitCode: e.ExitCode, Error: e.Error,
	}, true
}

func isLoopback(a net.Addr) bool {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
