package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/docker/docker/errdefs"
	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/rollout"
	"github.com/baton-sh/baton/internal/state"
	"github.com/baton-sh/baton/internal/traffic"
)

// rolloutFlags select the hosts of a rollout across several engines.
func rolloutFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "hosts", Usage: "deploy on every host listed in `FILE`, one at a time (lines: NAME [relay-address=IP] [docker-host=URL]; NAME is a docker context)", Category: "Hosts"},
	}
}

// deployRolloutFlags are the choices only a deploy across hosts has.
func deployRolloutFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "down", Value: string(rollout.DownFail), Usage: "a host whose engine does not answer: fail (change no host) or skip (report it, deploy the others)", Category: "Hosts"},
		&ucli.BoolFlag{Name: "rollback-on-failure", Usage: "when a host fails, return the hosts this rollout already changed to their old image", Category: "Hosts"},
	}
}

// rolloutHosts returns the hosts named by repeated --context flags and
// --hosts FILE, and whether the command runs across hosts (more than one,
// or a hosts file).
func rolloutHosts(c *ucli.Context) ([]rollout.Host, bool, error) {
	var hosts []rollout.Host
	for _, name := range engineContexts(c) {
		hosts = append(hosts, rollout.Host{Name: name})
	}
	file := c.String("hosts")
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, true, usageErr("--hosts: %v", err)
		}
		defer f.Close()
		listed, err := rollout.ParseHosts(f, file)
		if err != nil {
			return nil, true, &exitError{code: 2, err: err}
		}
		if len(listed) == 0 {
			return nil, true, usageErr("--hosts %s lists no host", file)
		}
		hosts = append(hosts, listed...)
	}
	return hosts, file != "" || len(hosts) > 1, nil
}

// connectContext opens the engine a docker context names, as the docker
// CLI would reach it (ssh:// included).
func connectContext(ctx context.Context, name string) (*dockerctl.Client, error) {
	ep, err := dockerctl.ResolveEndpoint(name)
	if err != nil {
		return nil, err
	}
	return dockerctl.NewFromEndpoint(ctx, ep)
}

func connectHost(ctx context.Context, h rollout.Host) (*dockerctl.Client, error) {
	if h.DockerHost != "" {
		return dockerctl.NewAt(ctx, h.DockerHost)
	}
	return connectContext(ctx, h.Name)
}

// hostEngines opens each host of a rollout once: its engine, and a deployer
// with the engine's own state directory (state.EngineDir: the one a
// single-host run on that engine uses too), so records, host locks and the
// journal of one host never mix with another's, and a rollout and a
// `baton --context HOST deploy` of one container lock each other out.
type hostEngines struct {
	c *ucli.Context
	// report is where a host's deploy reports: the terminal, marked with
	// the host, or (watch, serve) the log.
	report func(host string) hostReporter
	root   string
	order  []string

	mu      sync.Mutex
	conns   map[string]*hostConn
	servers map[string][]string // each host's relay, as nginx reaches it
}

type hostConn struct {
	eng *dockerctl.Client
	d   *deploy.Deployer
}

func newHostEngines(c *ucli.Context, report func(host string) hostReporter, hosts []rollout.Host) *hostEngines {
	e := &hostEngines{c: c, report: report, root: c.String("state-dir"), conns: map[string]*hostConn{}, servers: map[string][]string{}}
	for _, h := range hosts {
		e.order = append(e.order, h.Name)
	}
	return e
}

func (e *hostEngines) Close() {
	for _, hc := range e.conns {
		_ = hc.eng.Close()
	}
}

func (e *hostEngines) conn(ctx context.Context, h rollout.Host) (*hostConn, error) {
	e.mu.Lock()
	hc := e.conns[h.Name]
	e.mu.Unlock()
	if hc != nil {
		return hc, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	eng, err := connectHost(cctx, h)
	if err != nil {
		return nil, err
	}
	dir := state.EngineDir(e.root, eng.Endpoint.Host)
	moved, err := state.MigrateHostDir(e.root, h.Name, dir)
	if moved {
		e.report(h.Name).note("state moved from " + filepath.Join(e.root, "hosts", h.Name) + " to " + dir + " (state is kept per engine now)")
	}
	if err != nil {
		e.report(h.Name).warn(err.Error())
	}
	d, err := newDeployerOn(e.c, e.report(h.Name), eng, dir, e.shared(h.Name))
	if err != nil {
		_ = eng.Close()
		return nil, err
	}
	hc = &hostConn{eng: eng, d: d}
	e.mu.Lock()
	e.conns[h.Name] = hc
	e.mu.Unlock()
	return hc, nil
}

// shared is host's hook into the one upstream file: its own relay replaces
// what the file had for it, the other hosts' stay.
func (e *hostEngines) shared(host string) func([]string) []string {
	return func(own []string) []string {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.servers[host] = own
		var all []string
		seen := map[string]bool{}
		for _, h := range e.order {
			for _, s := range e.servers[h] {
				if !seen[s] {
					seen[s] = true
					all = append(all, s)
				}
			}
		}
		return all
	}
}

// Facts implements rollout.Engines.
func (e *hostEngines) Facts(ctx context.Context, h rollout.Host, target string) rollout.HostFacts {
	f := rollout.HostFacts{Host: h.Name}
	hc, err := e.conn(ctx, h)
	if err != nil {
		f.Down = err.Error()
		return f
	}
	ci, err := hc.eng.ContainerInspect(ctx, target)
	switch {
	case errdefs.IsNotFound(err):
		return f
	case err != nil:
		f.Down = err.Error()
		return f
	}
	f.Found, f.Image = true, ci.Config.Image
	// The relay this host already has stays in the upstream file while
	// other hosts deploy.
	if r, err := hc.eng.ContainerInspect(ctx, traffic.RelayName(deploy.ServiceOf(ci).Key)); err == nil {
		if s, ok := traffic.HostRelayServer(r); ok {
			e.mu.Lock()
			e.servers[h.Name] = []string{s}
			e.mu.Unlock()
		}
	}
	return f
}

func (e *hostEngines) request(h rollout.Host, req deploy.Request) deploy.Request {
	flags := map[string]string{}
	for k, v := range req.Flags {
		flags[k] = v
	}
	delete(flags, "relay-address") // a NAME=IP list across hosts
	if h.RelayAddress != "" {
		flags["relay-address"] = h.RelayAddress
	}
	req.Flags = flags
	return req
}

// Deploy implements rollout.Engines.
func (e *hostEngines) Deploy(ctx context.Context, h rollout.Host, req deploy.Request) (*deploy.Result, error) {
	hc, err := e.conn(ctx, h)
	if err != nil {
		return nil, err
	}
	return hc.d.Deploy(ctx, e.request(h, req))
}

// Rollback implements rollout.Engines.
func (e *hostEngines) Rollback(ctx context.Context, h rollout.Host, req deploy.Request) (*deploy.Result, error) {
	hc, err := e.conn(ctx, h)
	if err != nil {
		return nil, err
	}
	return hc.d.Rollback(ctx, e.request(h, req))
}

// hostReporter is where one host's deploy reports.
type hostReporter interface {
	reporterNoter
	warn(msg string)
}

// terminalHosts reports each host's events on out, marked with the host.
func terminalHosts(out *output) func(string) hostReporter {
	return func(host string) hostReporter { return hostOutput{o: out, host: host} }
}

// hostOutput reports one host's events, marked with the host.
type hostOutput struct {
	o    *output
	host string
}

func (h hostOutput) Event(e deploy.Event) { e.Host = h.host; h.o.Event(e) }
func (h hostOutput) note(msg string) {
	h.Event(deploy.Event{Time: time.Now(), Phase: "note", Message: msg})
}
func (h hostOutput) warn(msg string) {
	h.Event(deploy.Event{Time: time.Now(), Phase: "note", Message: msg, Warning: true})
}

// checkRolloutSettings refuses settings that cannot work across hosts.
func checkRolloutSettings(settings map[string]string) error {
	if settings["nginx-container"] != "" {
		return usageErr("--nginx-container with several hosts: the shared nginx runs where baton runs; give --nginx-upstream FILE and --nginx-reload CMD")
	}
	if settings["relay"] == "false" {
		return usageErr("--relay=false with several hosts: nginx balances across the hosts' relays, so a rollout needs them")
	}
	// A canary with no duration waits for `baton promote`/`abort`, which
	// act on one host's record: a rollout would leave one waiting canary
	// per host and call them deployed.
	if c, err := deploy.ParseCanary(settings["canary"]); err == nil && c.Percent > 0 && c.Duration == 0 {
		return usageErr("--canary %s with several hosts: a canary that waits for promote/abort cannot span a rollout; give it a duration (--canary %d:10m)", settings["canary"], c.Percent)
	}
	return nil
}

// runRollout deploys (or rolls back) the target on every host, one at a
// time.
func runRollout(c *ucli.Context, hosts []rollout.Host, kind rollout.Kind, req deploy.Request, asJSON, quiet bool) error {
	out := newOutput(c.App.Writer, c.App.ErrWriter, asJSON, quiet)
	if err := checkRolloutSettings(req.Flags); err != nil {
		return err
	}
	if err := rollout.ApplyRelayAddresses(hosts, req.Flags["relay-address"]); err != nil {
		return &exitError{code: 2, err: err}
	}
	down, err := rollout.ParseDownPolicy(c.String("down"))
	if kind == rollout.KindRollback && !c.IsSet("down") {
		down, err = rollout.DownFail, nil
	}
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	x, eng, err := newRolloutExecutor(c, hosts, terminalHosts(out))
	if err != nil {
		return err
	}
	defer eng.Close()
	res, err := x.Run(c.Context, rollout.Options{Kind: kind, Down: down, RollbackOnFailure: c.Bool("rollback-on-failure"), Request: req})
	printRollout(out, res)
	if err != nil {
		return &exitError{code: rollout.ExitCode(err), err: err}
	}
	return nil
}

// newRolloutExecutor is the one way a rollout across hosts is run (deploy,
// rollback, watch, serve): each host's engine and state directory, and the
// rollout lock in the root state directory, so that two rollouts of one
// service never interleave, whichever command started them. The caller
// closes the engines.
func newRolloutExecutor(c *ucli.Context, hosts []rollout.Host, report func(host string) hostReporter) (*rollout.Executor, *hostEngines, error) {
	if err := checkContexts(hosts); err != nil {
		return nil, nil, err
	}
	st, err := state.Open(c.String("state-dir"))
	if err != nil {
		return nil, nil, fmt.Errorf("%w (set --state-dir or BATON_STATE_DIR to a writable directory)", err)
	}
	eng := newHostEngines(c, report, hosts)
	x := &rollout.Executor{
		Hosts: hosts, Engines: eng,
		Lock: func(ctx context.Context, service string) (func(), error) {
			return st.Lock(ctx, "rollout-"+service, func() {
				report("").note("another rollout of " + service + " is running; waiting for it to finish")
			})
		},
		Note: func(host, msg string) { report(host).note(msg) },
	}
	return x, eng, nil
}

func printRollout(o *output, res *rollout.Result) {
	if o.json {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.writeJSON(struct {
			Type string `json:"type"`
			*rollout.Result
		}{"rollout", res})
		return
	}
	for _, h := range res.Hosts {
		line := fmt.Sprintf("host %s: %s", h.Host, h.Status)
		if r := h.Deploy; r != nil && h.Status != rollout.StatusFailed {
			switch h.Status {
			case rollout.StatusPlanned:
				fmt.Fprintln(o.stdout, line+":")
				o.printPlan(r.Plan)
				continue
			case rollout.StatusUpToDate:
				line += fmt.Sprintf(", %s", r.NewImage)
			default:
				line += fmt.Sprintf(", %s -> %s in %s", r.OldImage, r.NewImage, h.Duration.Round(100*time.Millisecond))
			}
		}
		if h.Error != "" {
			line += ": " + h.Error
		} else if h.Reason != "" {
			line += " (" + h.Reason + ")"
		}
		fmt.Fprintln(o.stdout, line)
	}
	fmt.Fprintf(o.stdout, "%s (%s)\n", res.Summary, res.Duration.Round(100*time.Millisecond))
}

// checkContexts refuses a context the docker CLI's store does not hold,
// before any host is touched: it is a typo, not a host that is down.
func checkContexts(hosts []rollout.Host) error {
	for _, h := range hosts {
		if h.DockerHost != "" {
			continue
		}
		if _, err := dockerctl.ResolveEndpoint(h.Name); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	return nil
}

// runRolloutStatus shows the target (or every managed service) on each
// host.
func runRolloutStatus(c *ucli.Context, hosts []rollout.Host, target string, asJSON bool) error {
	out := newOutput(c.App.Writer, c.App.ErrWriter, false, asJSON)
	if err := checkContexts(hosts); err != nil {
		return err
	}
	if target == "" {
		// A repair writes a service's one upstream file, which lists every
		// host's relays: it needs them all, per service.
		return usageErr("status across hosts takes the service NAME (baton status NAME --hosts FILE): its upstream file lists the relays of every host")
	}
	eng := newHostEngines(c, terminalHosts(out), hosts)
	defer eng.Close()
	type hostStatus struct {
		Host     string                 `json:"host"`
		Down     string                 `json:"down,omitempty"`
		Services []deploy.ServiceStatus `json:"services"`
	}
	var all []hostStatus
	worst := 0
	// Every host's relay first, so a repair on one keeps the others in the
	// upstream file.
	for _, h := range hosts {
		if target != "" {
			eng.Facts(c.Context, h, target)
		}
	}
	for _, h := range hosts {
		hs := hostStatus{Host: h.Name, Services: []deploy.ServiceStatus{}}
		hc, err := eng.conn(c.Context, h)
		if err == nil {
			report := func(p deploy.Phase, ctr, format string, args ...any) {
				out.Event(deploy.Event{Time: time.Now(), Host: h.Name, Phase: p, Container: ctr, Message: fmt.Sprintf(format, args...)})
			}
			hs.Services, err = hc.d.Status(c.Context, target, report)
		}
		if err != nil {
			hs.Down = err.Error()
			worst = rollout.WorstExit(worst, max(1, deploy.ExitCode(err)))
		}
		all = append(all, hs)
	}
	if asJSON {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(all); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tCONTAINER\tIMAGE\tSTATE\tPREVIOUS IMAGE\tTRAFFIC")
		for _, hs := range all {
			if hs.Down != "" {
				fmt.Fprintf(tw, "%s\t-\t-\tdown: %s\t-\t-\n", hs.Host, hs.Down)
				continue
			}
			for _, s := range hs.Services {
				st := s.State
				if s.Health != "" {
					st += " (" + s.Health + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", hs.Host, s.Container, orDash(s.Image), st, orDash(s.PreviousImage), orDash(s.Traffic))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if worst != 0 {
		return &exitError{code: worst, err: fmt.Errorf("not every host answered (see the table)")}
	}
	return nil
}
