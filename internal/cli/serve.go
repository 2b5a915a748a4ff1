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

	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/unattended"
	"github.com/baton-sh/baton/internal/webhook"
)

func newServeCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "serve",
		Usage: "accept authenticated webhooks (CI, Docker Hub, registry notifications) that deploy opted-in containers",
		Description: `POST /v1/deploy/CONTAINER deploys CONTAINER and answers 202 with a request id;
GET /v1/deploys/ID says how it went; GET /metrics serves Prometheus metrics.

A request is authenticated by "Authorization: Bearer TOKEN" or by
"X-Baton-Signature: sha256=HEX" (HMAC-SHA256 of the body; X-Hub-Signature-256 works too).
The token and the secret come from files (--token-file, --secret-file) or from the
environment (BATON_WEBHOOK_TOKEN, BATON_WEBHOOK_SECRET), never from a flag's value.

Bodies: {"image": "REF"} or {"tag": "TAG"} or nothing (pull the container's own tag
again); a Docker Hub webhook; a registry notification (a push of the container's
repository deploys the pushed tag; every other event is answered 200 and ignored).

One deploy per container at a time: requests that arrive while one runs are coalesced
into one follow-up deploy. On SIGTERM or SIGINT, baton serve stops accepting requests
and waits for a running deploy to finish (up to --shutdown-timeout), then exits 0.`,
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "listen", Value: "127.0.0.1:9090", Usage: "`ADDR` to listen on (put a TLS proxy in front to expose it beyond this host)"},
			&ucli.StringFlag{Name: "token-file", Usage: "bearer token in `FILE` (or set BATON_WEBHOOK_TOKEN)"},
			&ucli.StringFlag{Name: "secret-file", Usage: "HMAC-SHA256 secret in `FILE` (or set BATON_WEBHOOK_SECRET)"},
			&ucli.BoolFlag{Name: "query-token", Usage: "also accept the token as ?token=TOKEN, for senders that cannot set headers (Docker Hub); it may end up in proxy logs"},
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
	auth := webhook.Auth{Token: token, Secret: secret, QueryToken: c.Bool("query-token")}
	if !auth.Configured() {
		return usageErr("baton serve needs a token or a secret: --token-file, --secret-file, BATON_WEBHOOK_TOKEN or BATON_WEBHOOK_SECRET")
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
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return usageErr("--listen %s: %v", c.String("listen"), err)
	}
	if !isLoopback(ln.Addr()) {
		log.Warn("listening beyond this host: put TLS in front of baton serve, or bind it to 127.0.0.1", "addr", ln.Addr().String())
	}
	srv := &webhook.Server{
		Auth: auth, MaxBody: int64(c.Int("max-body")),
		Resolve: func(ctx context.Context, target string) (string, error) { return u.resolve(ctx, target) },
		Submit:  u.queue.Submit,
		Status:  u.queue.Status,
		History: u.history,
		Metrics: u.metrics.Handler(),
		Observe: u.metrics.Webhook,
		Log:     log,
	}
	log.Info("serving webhooks", "addr", ln.Addr().String(), "all", u.sel.All, "scope", u.sel.Scope)
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
		return "", fmt.Errorf("%w: %s", webhook.ErrNotFound, target)
	}
	if err != nil {
		return "", fmt.Errorf("inspecting container %s: %w", target, err)
	}
	if err := u.sel.Allows(ctr.Config.Labels); err != nil {
		return "", fmt.Errorf("%w: container %s: %v", webhook.ErrNotEnabled, target, err)
	}
	return ctr.Config.Image, nil
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
