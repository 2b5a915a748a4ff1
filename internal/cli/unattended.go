package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/metrics"
	"github.com/baton-sh/baton/internal/notify"
	"github.com/baton-sh/baton/internal/redact"
	"github.com/baton-sh/baton/internal/rollout"
	"github.com/baton-sh/baton/internal/state"
	"github.com/baton-sh/baton/internal/swarmdeploy"
	"github.com/baton-sh/baton/internal/unattended"
	"github.com/baton-sh/baton/internal/watch"
	"github.com/baton-sh/baton/internal/webhook"
)

// unattendedFlags are the flags baton watch and baton serve share.
func unattendedFlags() []ucli.Flag {
	return []ucli.Flag{
		contextFlag(),
		&ucli.BoolFlag{Name: "all", Usage: "manage every running container, not only those labelled " + unattended.LabelEnable + "=true (" + unattended.LabelEnable + "=false still opts one out)"},
		&ucli.StringFlag{Name: "scope", Usage: "manage only containers labelled " + unattended.LabelScope + "=`NAME`", EnvVars: []string{"BATON_SCOPE"}},
		&ucli.StringFlag{Name: "notify-url", Usage: "POST a JSON message to `URL` after each deploy that changed something or failed", EnvVars: []string{"BATON_NOTIFY_URL"}, Category: "Hooks and notifications"},
		&ucli.StringFlag{Name: "notify-secret-file", Usage: "sign notifications with the HMAC secret in `FILE` (" + "X-Baton-Signature: sha256=...; or set BATON_NOTIFY_SECRET)", Category: "Hooks and notifications"},
		&ucli.StringFlag{Name: "pre-deploy", Usage: "run `CMD` before each deploy, details in BATON_* environment variables; a failure cancels the deploy (CMD is split into words, never run by a shell)", Category: "Hooks and notifications"},
		&ucli.StringFlag{Name: "post-deploy", Usage: "run `CMD` after each deploy, details (outcome, error) in BATON_* environment variables", Category: "Hooks and notifications"},
		&ucli.DurationFlag{Name: "hook-timeout", Value: 2 * time.Minute, Usage: "kill a --pre-deploy or --post-deploy command running longer than this", Category: "Hooks and notifications"},
		&ucli.DurationFlag{Name: "shutdown-timeout", Value: 5 * time.Minute, Usage: "on SIGTERM, how long a running deploy may take to finish before it is cancelled (it then rolls back, or completes if the old container was already stopped)"},
		&ucli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus metrics on `ADDR` (host:port) at /metrics"},
		&ucli.StringFlag{Name: "hosts", Usage: "each deploy is a rollout across every host listed in `FILE`, one at a time (lines: NAME [relay-address=IP] [docker-host=URL]); the last host's containers are the ones checked", Category: "Hosts"},
		&ucli.StringFlag{Name: "down", Value: string(rollout.DownFail), Usage: "across hosts, a host whose engine does not answer: fail (change no host) or skip (report it, deploy the others)", Category: "Hosts"},
		&ucli.BoolFlag{Name: "rollback-on-failure", Usage: "across hosts, when a host fails, return the hosts the rollout already changed to their old image", Category: "Hosts"},
	}
}

// unattendedRun is what baton watch and baton serve build on.
type unattendedRun struct {
	log *slog.Logger
	// eng is the engine whose containers are watched and whose labels
	// admit a request: across hosts, the last host's (see
	// unattendedRollout).
	eng          *dockerctl.Client
	closeEngines func()
	// multi: each deploy is a rollout across hosts, which deploys
	// containers only; a Swarm service on eng (the last host's engine) is
	// neither watched nor accepted by a webhook, since its rollout would
	// fail on every host.
	multi   bool
	queue   *unattended.Queue
	journal *journal.Journal
	metrics *metrics.Metrics
	state   *state.Dir
	sel     unattended.Selector
	// repos says which images a queued job may deploy (baton serve sets
	// the operator's allowlist; watch deploys only a container's own tag).
	repos webhook.RepoPolicy
	bound time.Duration
	// metricsDone, if set, waits for the --metrics-listen server, which
	// stops with ctx.
	metricsDone func()
	ctx         context.Context
}

// longRunningLogger logs at info unless --log-level says otherwise: what an
// unattended baton did is the point of its logs.
func longRunningLogger(c *ucli.Context) *slog.Logger {
	lvl := slog.LevelInfo
	if c.IsSet("log-level") {
		if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
			lvl = slog.LevelInfo
		}
	}
	return slog.New(redact.Handler(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lvl})))
}

func newUnattended(c *ucli.Context, log *slog.Logger) (*unattendedRun, error) {
	ex := &unattended.Executor{Log: log}
	var err error
	if ex.Notify, err = notifierFromFlags(c); err != nil {
		return nil, usageErr("%v", err)
	}
	if cmd := c.String("pre-deploy"); cmd != "" {
		if ex.Pre, err = notify.ParseHook("pre-deploy", cmd, c.Duration("hook-timeout")); err != nil {
			return nil, usageErr("%v", err)
		}
	}
	if cmd := c.String("post-deploy"); cmd != "" {
		if ex.Post, err = notify.ParseHook("post-deploy", cmd, c.Duration("hook-timeout")); err != nil {
			return nil, usageErr("%v", err)
		}
	}
	if c.Duration("shutdown-timeout") <= 0 {
		return nil, usageErr("--shutdown-timeout must be more than 0")
	}
	hosts, multi, err := rolloutHosts(c)
	if err != nil {
		return nil, err
	}
	if err := checkDispatchFlags(c, multi, false); err != nil {
		return nil, err
	}
	var eng *dockerctl.Client
	var st *state.Dir
	closeEngines := func() {}
	if multi {
		if eng, st, closeEngines, err = unattendedRollout(c, log, ex, hosts); err != nil {
			return nil, err
		}
	} else {
		out := newOutput(c.App.Writer, c.App.ErrWriter, false, true)
		d, e, err := newDeployer(c, out)
		if err != nil {
			return nil, err
		}
		// Progress goes to the log; the executor journals each deploy
		// itself, with the request ids it served.
		d.Report = slogReporter{log: log}
		d.OnFinish = nil
		ex.Deploy = func(ctx context.Context, req deploy.Request) (*deploy.Result, error) {
			// A Swarm service (no container has the name) deploys through
			// Swarm's updater; its result has the same fields, so the
			// journal, metrics and notifications treat it alike.
			if svc, err := isService(ctx, e, req.Target); err != nil {
				return nil, err
			} else if svc {
				return swarmDeployer(e, d.State, slogReporter{log: log}, log).Deploy(ctx, swarmdeploy.Options{
					Service: req.Target, Image: req.Image, Pull: req.Pull, Force: req.Force,
					Inherit: true, Trigger: req.Trigger, Who: req.Who,
					RegistryAuth: func(ref string) (string, error) { return dockerctl.RegistryAuth(ref, io.Discard) },
				})
			}
			return d.Deploy(ctx, req)
		}
		ex.Journal = journal.Open(d.State.Path())
		eng, st, closeEngines = e, d.State, func() { _ = e.Close() }
	}
	m := metrics.New()
	ex.Metrics = m
	ex.LogTail = func(ctx context.Context, id string) []string {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		lines, err := notify.ContainerLogTail(ctx, eng, id, notify.TailLines)
		if err != nil {
			log.Debug("log tail", "container", id, "error", err)
		}
		return lines
	}
	var u *unattendedRun
	ex.Admit = func(ctx context.Context, job unattended.Job) error { return u.admit(ctx, job) }
	q := unattended.NewQueue(c.Context, ex.Run, 1000)
	q.OnEvent(func(event string, s unattended.Status) {
		log.Info("request "+event, "id", s.ID, "target", s.Target, "image", s.Image, "trigger", s.Trigger, "who", s.Who, "run", s.RunID, "state", s.State)
	})
	u = &unattendedRun{
		log: log, eng: eng, closeEngines: closeEngines, multi: multi, queue: q, journal: ex.Journal, metrics: m, state: st,
		sel:   unattended.Selector{All: c.Bool("all"), Scope: c.String("scope")},
		bound: c.Duration("shutdown-timeout"),
		ctx:   c.Context,
	}
	if addr := c.String("metrics-listen"); addr != "" {
		if u.metricsDone, err = serveMetrics(c.Context, addr, m.Handler(), log); err != nil {
			u.close()
			return nil, usageErr("%v", err)
		}
	}
	return u, nil
}

// unattendedRollout sets watch or serve up across hosts: each request runs
// one rollout (rollout.Executor.DeployFunc: one host at a time, under the
// rollout lock a CLI rollout takes too), never one deploy per host. The
// containers checked for a new image and for opt-in labels are the last
// host's: a rollout changes it last, so one that stopped early leaves it on
// the old digest and the next check (after --retry-after, as for any
// failed deploy) runs the rollout again; hosts already on the new image are
// up to date then. Each host's deploy goes into that host's journal; the
// rollout as one run goes into the rollouts journal (<state-dir>/rollouts),
// where serve finds a request after a restart.
func unattendedRollout(c *ucli.Context, log *slog.Logger, ex *unattended.Executor, hosts []rollout.Host) (*dockerctl.Client, *state.Dir, func(), error) {
	down, err := rollout.ParseDownPolicy(c.String("down"))
	if err != nil {
		return nil, nil, nil, &exitError{code: 2, err: err}
	}
	x, engines, err := newRolloutExecutor(c, hosts, func(host string) hostReporter {
		return slogReporter{log: log.With("host", host)}
	})
	if err != nil {
		return nil, nil, nil, err
	}
	last := hosts[len(hosts)-1]
	cctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	hc, err := engines.conn(cctx, last)
	cancel()
	if err != nil {
		engines.Close()
		return nil, nil, nil, fmt.Errorf("host %s (the last of the rollout, whose containers are watched): %w", last.Name, err)
	}
	rdir := filepath.Join(c.String("state-dir"), "rollouts")
	if err := os.MkdirAll(rdir, state.DirMode); err != nil {
		engines.Close()
		return nil, nil, nil, fmt.Errorf("state directory %s: %w", rdir, err)
	}
	ex.Deploy = x.DeployFunc(rollout.Options{Down: down, RollbackOnFailure: c.Bool("rollback-on-failure")})
	ex.Journal = journal.Open(rdir)
	log.Info("across hosts: each deploy is a rollout, one host at a time", "hosts", len(hosts), "watched_host", last.Name)
	return hc.eng, hc.d.State, engines.Close, nil
}

// admit checks, when a queued job's run starts, that its target is still
// opted in and its image still allowed: the request was checked when it
// arrived, but labels and the container can change while it waits.
func (u *unattendedRun) admit(ctx context.Context, job unattended.Job) error {
	current, err := u.resolve(ctx, job.Target)
	if err != nil {
		return err
	}
	return u.repos.Check(current, job.Image)
}

// serviceLister is where watch finds the Swarm services it checks: none
// across hosts (see unattendedRun.multi). A nil interface, not a nil
// *dockerctl.Client in one, so the watcher's nil check sees it.
func (u *unattendedRun) serviceLister() watch.ServiceLister {
	if u.multi || u.eng == nil {
		return nil
	}
	return u.eng
}

// shutdown stops the queue: no new deploys, running ones get the bound.
func (u *unattendedRun) shutdown() error {
	u.log.Info("stopping: no new deploys; waiting for running ones", "bound", u.bound)
	if !u.queue.Close(u.bound) {
		return &exitError{code: 1, err: fmt.Errorf("a deploy was still running %s after the stop signal and was cancelled (it rolled back if it had not stopped the old container yet; baton history shows how it ended)", u.bound)}
	}
	u.log.Info("stopped")
	return nil
}

// close releases the engine client; after a stop signal it first waits for
// the metrics server, which stops with it (a --once run just exits).
func (u *unattendedRun) close() {
	if u.metricsDone != nil && u.ctx.Err() != nil {
		u.metricsDone()
	}
	u.closeEngines()
}

// serveMetrics serves /metrics on addr until ctx ends. It returns once the
// listener is bound.
func serveMetrics(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (wait func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "addr", ln.Addr().String(), "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("metrics", "addr", ln.Addr().String())
	return func() { <-done }, nil
}

func notifierFromFlags(c *ucli.Context) (*notify.Notifier, error) {
	url := c.String("notify-url")
	if url == "" {
		return nil, nil
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("--notify-url %q: want an http:// or https:// URL", redact.Endpoint(url))
	}
	secret, err := readSecret(c.String("notify-secret-file"), "BATON_NOTIFY_SECRET")
	if err != nil {
		return nil, fmt.Errorf("--notify-secret-file: %w", err)
	}
	return &notify.Notifier{URL: url, Secret: secret}, nil
}

// readSecret reads a secret from a file (trailing newline trimmed) or, when
// no file is named, from an environment variable. Secrets never come from a
// flag's value: those show in ps.
func readSecret(file, env string) ([]byte, error) {
	if file == "" {
		return []byte(os.Getenv(env)), nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkSecretFile(file, f); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", file)
	}
	return b, nil
}

// slogReporter logs deploy progress events.
type slogReporter struct{ log *slog.Logger }

func (r slogReporter) Event(e deploy.Event) {
	if e.Progress {
		return // health-wait ticks: too chatty for a log
	}
	args := []any{"target", e.Service, "phase", string(e.Phase), "container", e.Container}
	if e.Host != "" {
		args = append(args, "host", e.Host)
	}
	if e.Warning {
		r.log.Warn(e.Message, args...)
		return
	}
	r.log.Info(e.Message, args...)
}

func (r slogReporter) note(msg string) { r.log.Info(msg) }
func (r slogReporter) warn(msg string) { r.log.Warn(msg) }

// checkSecretFile refuses a secret file that others could read (they would
// hold the webhook's credential) or write (they would choose it), or that
// belongs to someone other than root or baton's user.
func checkSecretFile(name string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", name)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, who could change it; make it root's (chown root %s)", name, st.Uid, name)
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o022 != 0:
		return fmt.Errorf("%s is writable by group or others (mode %04o), who could set the secret; chmod 600 %s", name, perm, name)
	case perm&0o004 != 0:
		return fmt.Errorf("%s is readable by everyone (mode %04o); chmod 600 %s", name, perm, name)
	}
	return nil
}
