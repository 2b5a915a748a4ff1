package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// SwarmConfig says what RunSwarm measures: Deploys updates of a Swarm
// service by each side (Swarm's own start-first update, then baton's
// service deploy) under the load of Clients at Rate through nginx.
type SwarmConfig struct {
	Nodes    int // swarm nodes, each an engine host in its own netns (default 1)
	Replicas int // the service's tasks (default 2)
	Deploys  int // per side (default DefaultDeploys)
	// ResolverValid is how long nginx keeps the tasks' addresses (its
	// resolver's valid=, default 1s). Longer than 1s, baton's side deploys
	// with --update-delay 2s beyond it, as the README advises.
	ResolverValid time.Duration
	Clients       int
	Rate          float64
	Warmup        time.Duration
	Out           io.Writer
}

// The sides of the swarm benchmark, in the order they run.
const (
	SwarmSidePlain = "docker service update --update-order start-first"
	SwarmSideBaton = "baton deploy"
)

// SwarmSide is what one side measured: the requests sent from its first
// update's start to its last one's end, and each update's wall time.
type SwarmSide struct {
	Side    string          `json:"side"`
	Total   int             `json:"requests"`
	Failed  int             `json:"failed"`
	Times   []time.Duration `json:"deploy_ns"`
	Summary string          `json:"load_summary"`
	Reasons []ReasonCount   `json:"failure_reasons,omitempty"`
	// Updates are the updates' spans and FailedAt when each failed request
	// was sent: inside an update or between two.
	Updates  []Window    `json:"updates"`
	FailedAt []time.Time `json:"failed_at,omitempty"`
	Error    string      `json:"error,omitempty"`
}

// SwarmReport is RunSwarm's result.
type SwarmReport struct {
	Engine   string      `json:"engine"`
	Nodes    int         `json:"nodes"`
	Replicas int         `json:"replicas"`
	Valid    string      `json:"resolver_valid"`
	Baton    string      `json:"baton_command"`
	Deploys  int         `json:"deploys"`
	Clients  int         `json:"clients"`
	Rate     float64     `json:"rate"`
	Sides    []SwarmSide `json:"sides"`
}

// String is a heading and one row per side.
func (r *SwarmReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nswarm (%s): %d node(s), a dnsrr service of %d replicas behind nginx resolving tasks.<service> (valid=%s); %d updates per side under %d keep-alive clients (%.0f req/s each, GET+POST); baton's side: %s\n\n",
		r.Engine, r.Nodes, r.Replicas, r.Valid, r.Deploys, r.Clients, r.Rate, r.Baton)
	rows := [][]string{{"side", "failed/total", "deploy p50", "deploy max"}}
	for _, s := range r.Sides {
		p50, top := "-", "-"
		if len(s.Times) > 0 {
			p := loadgen.PercentilesOf(s.Times)
			p50, top = fmtDuration(p.P50), fmtDuration(p.Max)
		}
		rows = append(rows, []string{s.Side, fmt.Sprintf("%d/%d", s.Failed, s.Total), p50, top})
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			fmt.Fprintf(&line, "%-*s", widths[i], c)
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	for _, s := range r.Sides {
		for _, rc := range s.Reasons {
			fmt.Fprintf(&b, "%s: %d × %s\n", s.Side, rc.Count, rc.Reason)
		}
		if s.Error != "" {
			fmt.Fprintf(&b, "%s: %s\n", s.Side, s.Error)
		}
	}
	return b.String()
}

// RunSwarm starts a swarm of cfg.Nodes engine hosts (testenv.StartSwarm,
// its own prefix and addresses), runs the demo app as a dnsrr service
// behind an nginx container resolving its tasks, and measures cfg.Deploys
// plain start-first updates, then as many baton deploys, each side under
// its own run of the same load.
func RunSwarm(ctx context.Context, cfg SwarmConfig) (*SwarmReport, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 2
	}
	if cfg.Deploys <= 0 {
		cfg.Deploys = DefaultDeploys
	}
	if cfg.Clients <= 0 {
		cfg.Clients = DefaultClients
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = DefaultWarmup
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.ResolverValid <= 0 {
		cfg.ResolverValid = time.Second
	}
	rep := &SwarmReport{Engine: "unknown engine", Nodes: cfg.Nodes, Replicas: cfg.Replicas, Valid: cfg.ResolverValid.String(), Deploys: cfg.Deploys, Clients: cfg.Clients, Rate: cfg.Rate}
	rep.Baton = strings.TrimSpace("baton deploy SERVICE --image X " + strings.Join(swarmBatonFlags(cfg), " "))
	ctx, cancel := context.WithTimeout(ctx, setupBudget+2*swarmLoadBound(cfg))
	defer cancel()
	env := testenv.NewEnv(ctx, "bench-swarm", cfg.Out)
	runErr := env.Run(func(t testenv.TB) { measureSwarm(t, cfg, rep) })
	var errs []error
	for _, s := range rep.Sides {
		if s.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", s.Side, s.Error))
		}
	}
	return rep, errors.Join(runErr, errors.Join(errs...), env.Close())
}

func measureSwarm(t testenv.TB, cfg SwarmConfig, rep *SwarmReport) {
	const name, repo = "h11c-bench-web", "h11c/bench-web"
	sw := testenv.StartSwarm(t, testenv.EngineHostsOpts{Prefix: "h11cb", N: cfg.Nodes, Net: 244})
	cli := sw.Manager.Client
	if e, err := engineOfClient(t.Context(), cli); err == nil {
		rep.Engine = e.String()
	}
	// Every node has its own copy of the images, by the same tag: there is
	// no registry the nodes could pull from.
	for _, h := range sw.Hosts {
		for _, v := range []string{"v1", "v2"} {
			testenv.DemoImage(t, h.Client, testenv.DemoImageOpts{Repo: repo, Tag: v, Version: v, Env: map[string]string{"WARMUP": cfg.Warmup.String()}, HealthCheck: true, HealthInterval: benchHealthInterval})
		}
	}
	svc := testenv.StartDNSRRService(t, cli, testenv.DNSRRServiceOpts{Name: name, Image: repo + ":v1", Replicas: uint64(cfg.Replicas), ResolverValid: cfg.ResolverValid, PublishIP: sw.Manager.Addr})
	baton := NewBaton(t)
	sides := []struct {
		name   string
		update func(image string) error
	}{
		{SwarmSidePlain, func(image string) error { return plainServiceUpdate(t.Context(), cli, svc.ID, image) }},
		{SwarmSideBaton, func(image string) error {
			args := append([]string{"--state-dir", baton.StateDir, "deploy", name, "--image", image}, swarmBatonFlags(cfg)...)
			cmd := exec.CommandContext(t.Context(), baton.Bin, args...)
			cmd.Env = append(os.Environ(), "DOCKER_HOST="+sw.Manager.Socket)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("baton deploy %s --image %s: %w: %s", name, image, err, lastLines(string(out), 5))
			}
			return nil
		}},
	}
	n := 0
	for _, sd := range sides {
		side := SwarmSide{Side: sd.name}
		load, err := loadgen.Start(t.Context(), loadgen.Config{URL: svc.Nginx.URL() + "/", Clients: cfg.Clients, Rate: cfg.Rate, Duration: swarmLoadBound(cfg), AllowHosts: []string{sw.Manager.Addr}})
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		if err := WaitFlowing(t.Context(), load, cfg.Clients); err != nil {
			load.Stop()
			t.Fatalf("%v", err)
		}
		pause(t, settle)
		for i := range cfg.Deploys {
			n++
			image := repo + ":" + []string{"v1", "v2"}[n%2]
			start := time.Now()
			err := sd.update(image)
			if err == nil {
				// Done means every replica runs the new image, whoever says so.
				_, err = svc.Tasks(t.Context(), image, cfg.Replicas, healthTimeout)
			}
			if err != nil {
				side.Error = fmt.Sprintf("update %d: %v", i+1, err)
				break
			}
			side.Times = append(side.Times, time.Since(start))
			side.Updates = append(side.Updates, Window{Start: start, End: time.Now()})
			t.Logf("%s %d/%d to %s: %s", sd.name, i+1, cfg.Deploys, image, fmtDuration(time.Since(start)))
			pause(t, settle)
		}
		res := load.Stop()
		side.Total, side.Failed, side.Summary = res.Total(), res.Failed(), res.Summary()
		side.Reasons = FailureReasons(res, 3)
		for _, f := range res.Failures() {
			side.FailedAt = append(side.FailedAt, f.Start)
		}
		rep.Sides = append(rep.Sides, side)
	}
}

// swarmLoadBound is how long one side's load may run at most: a deploy's
// budget per task, and baton's update delay after each.
func swarmLoadBound(cfg SwarmConfig) time.Duration {
	tasks := cfg.Deploys * cfg.Replicas
	return loadBound(tasks) + time.Duration(tasks)*(cfg.ResolverValid+2*time.Second)
}

// swarmBatonFlags are the flags of baton's side beyond the image: a
// --update-delay past nginx's cache of the tasks when it keeps them longer
// than a second, so every answer nginx holds names a live task.
func swarmBatonFlags(cfg SwarmConfig) []string {
	if cfg.ResolverValid <= time.Second {
		return nil
	}
	return []string{"--update-delay", (cfg.ResolverValid + 2*time.Second).String()}
}

// plainServiceUpdate is what a Swarm user runs without baton, `docker
// service update --update-order start-first --image X` with the CLI's
// defaults otherwise (parallelism 1, no delay, monitor 5s, failure action
// pause), sent through the API as the CLI does (the machine's docker CLI
// is too old for a current engine), and waits, as the CLI does, until Swarm
// says the update is complete.
func plainServiceUpdate(ctx context.Context, cli *client.Client, id, image string) error {
	svc, _, err := cli.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return fmt.Errorf("service %s: inspect: %w", id, err)
	}
	spec := svc.Spec
	spec.TaskTemplate.ContainerSpec.Image = image
	spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStartFirst, FailureAction: swarm.UpdateFailureActionPause, Monitor: 5 * time.Second}
	if _, err := cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		return fmt.Errorf("service %s: update: %w", spec.Name, err)
	}
	sent := time.Now()
	deadline := sent.Add(commandTimeout)
	for time.Now().Before(deadline) {
		cur, _, err := cli.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
		if err != nil {
			return fmt.Errorf("service %s: inspect: %w", spec.Name, err)
		}
		if us := cur.UpdateStatus; us != nil && us.StartedAt != nil && cur.Spec.TaskTemplate.ContainerSpec.Image == image {
			switch us.State {
			case swarm.UpdateStateCompleted:
				return nil
			case swarm.UpdateStatePaused, swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused:
				return fmt.Errorf("service %s: update %s: %s", spec.Name, us.State, us.Message)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("service %s: update to %s not complete after %s", spec.Name, image, commandTimeout)
}
