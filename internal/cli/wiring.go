package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/healthcheck"
	"github.com/baton-sh/baton/internal/compose"
	"github.com/baton-sh/baton/internal/config"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/state"
	"github.com/baton-sh/baton/internal/traffic"
)

// newDeployer connects to Docker and opens the state directory. The caller
// closes the returned client.
func newDeployer(c *ucli.Context, out *output) (*deploy.Deployer, *dockerctl.Client, error) {
	ep, err := resolveEngine(c)
	if err != nil {
		return nil, nil, err
	}
	eng, err := dockerctl.NewFromEndpoint(c.Context, ep)
	if err != nil {
		return nil, nil, err
	}
	// compose, hooks and notifications' children talk to the same engine.
	set, unset := ep.ChildEnv()
	for k, v := range set {
		if err := os.Setenv(k, v); err != nil {
			_ = eng.Close()
			return nil, nil, fmt.Errorf("exporting %s for compose and hooks: %w", k, err)
		}
	}
	for _, k := range unset {
		_ = os.Unsetenv(k)
	}
	d, err := newDeployerOn(c, out, eng, engineStateDir(c, ep.Host), nil)
	if err != nil {
		_ = eng.Close()
		return nil, nil, err
	}
	return d, eng, nil
}

// engineStateDir is the state directory of the engine at host: the root
// --state-dir for the machine's default engine, else its own directory
// under it, whichever way a run named the engine (see state.EngineDir).
func engineStateDir(c *ucli.Context, host string) string {
	return state.EngineDir(c.String("state-dir"), host)
}

// newDeployerOn is newDeployer for a given engine and state directory (a
// host of a rollout has its own), with shared, if set, keeping the other
// hosts' relays in the upstream file. The caller closes eng.
func newDeployerOn(c *ucli.Context, out reporterNoter, eng *dockerctl.Client, statePath string, shared func([]string) []string) (*deploy.Deployer, error) {
	st, err := state.Open(statePath)
	if err != nil {
		return nil, fmt.Errorf("%w (set --state-dir or BATON_STATE_DIR to a writable directory)", err)
	}
	cfg, err := config.Load(c.String("config"), c.IsSet("config"))
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	policy := deploy.Policy{Config: cfg.Settings, ConfigPath: cfg.Path, UpstreamDirs: cfg.UpstreamDirs}
	// --upstream-dir is both a global flag (and BATON_UPSTREAM_DIRS) and one
	// of baton deploy's: take it from every level.
	for _, cc := range c.Lineage() {
		for _, dir := range cc.StringSlice("upstream-dir") {
			abs, err := filepath.Abs(dir)
			if err != nil {
				return nil, usageErr("--upstream-dir %q: %v", dir, err)
			}
			policy.UpstreamDirs = append(policy.UpstreamDirs, abs)
		}
	}
	log := logger(c)
	kernel := kernelpath.NewTable(kernelpath.ExecRunner{})
	f := &traffic.Factory{Engine: eng, Log: log, Notify: out.note, SharedUpstream: shared, Kernel: kernel}
	jr := journal.Open(st.Path())
	d := &deploy.Deployer{
		Engine:       eng,
		State:        st,
		Traffic:      f.New,
		Report:       out,
		Log:          log,
		Policy:       policy,
		HostPortFree: dockerctl.HostPortFree,
		KernelRoutes: traffic.KernelRoutes{Engine: eng, Host: kernel},
		// A compose container deployed by name stays compose's.
		SpecFor: compose.SpecForContainer(eng),
		// Every CLI deploy and rollback goes into the journal (baton
		// history), with the OS user as who ran it.
		OnFinish: func(res *deploy.Result) {
			if res.Who == "" {
				res.Who = cliUser()
			}
			if err := jr.Append(journal.FromResult(res, nil, journal.NewID(), nil)); err != nil {
				out.Event(deploy.Event{Time: time.Now(), Phase: "journal", Message: err.Error(), Warning: true})
			}
		},
	}
	if !eng.Endpoint.Local {
		remoteEngine(d, f, eng)
	}
	// A rollout's nginx is this machine's, whatever engine the host has.
	d.NginxHere = shared != nil
	if shared != nil {
		// A rollout's kernel paths are in each engine host's own
		// firewall, through a helper there (see traffic.Factory.New).
		d.KernelRoutes = traffic.KernelRoutes{Engine: eng, Remote: true, RelayImage: f.RelayImage}
	}
	return d, nil
}

// reporterNoter is what a deployer reports to: progress events and notes.
type reporterNoter interface {
	deploy.Reporter
	note(msg string)
}

// remoteEngine sets a deploy up for an engine on another machine: the
// containers' addresses are not reachable from here, so probes, warm-up
// requests and relay control connect from inside the service's relay
// container, an nginx container's upstream file is written through the
// container, and host ports are not checked here (they are the other
// machine's).
func remoteEngine(d *deploy.Deployer, f *traffic.Factory, eng *dockerctl.Client) {
	d.Remote = true
	d.HostPortFree = nil
	// The engine's host is another machine: its rules are in its own
	// firewall, reached through a helper container there.
	d.KernelRoutes = traffic.KernelRoutes{Engine: eng, Remote: true, RelayImage: f.RelayImage}
	d.Reach = func(svc deploy.Service) healthcheck.Dialer {
		relay := traffic.RelayName(svc.Key)
		return func(ctx context.Context, _, addr string) (net.Conn, error) {
			return eng.DialVia(ctx, relay, addr)
		}
	}
	f.Remote = true
	f.DialVia = eng.DialVia
}
