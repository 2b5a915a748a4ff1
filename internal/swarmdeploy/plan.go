package swarmdeploy

import (
	"fmt"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// Plan is what a service deploy changes in the spec, decided without I/O;
// --dry-run prints its Changes.
type Plan struct {
	ImageChanged bool
	// SettingsChanged: something in the task template besides the image
	// (the stop grace period) changes, which restarts the tasks too.
	SettingsChanged bool
	Changes         []string
}

// swarmDefaultGrace is the stop grace period Swarm uses when the spec sets
// none.
const swarmDefaultGrace = 10 * time.Second

// decide turns the current spec into the new one in place (spec is a copy)
// and says what changed. The update always runs start-first: a new task is
// running and healthy before an old one is stopped, and Swarm takes the old
// task out of the service's DNS before it signals it.
func decide(cur swarm.ServiceSpec, spec *swarm.ServiceSpec, ref string, o Options) Plan {
	var p Plan
	cs := spec.TaskTemplate.ContainerSpec
	if cs.Image != ref {
		p.ImageChanged = true
		p.Changes = append(p.Changes, fmt.Sprintf("image: %s -> %s", cs.Image, ref))
		cs.Image = ref
	}

	// In-flight requests on an old task must finish inside its grace
	// period: at least the drain time unless the operator chose one.
	grace := swarmDefaultGrace
	if cs.StopGracePeriod != nil {
		grace = *cs.StopGracePeriod
	}
	want := grace
	switch {
	case o.StopGrace > 0:
		want = o.StopGrace
	case grace < orDur(o.Drain, DefaultDrain):
		want = orDur(o.Drain, DefaultDrain)
	}
	if want != grace || cs.StopGracePeriod == nil {
		p.SettingsChanged = want != grace
		if p.SettingsChanged {
			p.Changes = append(p.Changes, fmt.Sprintf("stop grace period: %s -> %s", grace, want))
		}
		cs.StopGracePeriod = &want
	}

	uc := updateConfig(o)
	p.Changes = append(p.Changes, diffUpdate("update", cur.UpdateConfig, uc)...)
	spec.UpdateConfig = uc
	rc := *uc
	rc.FailureAction = swarm.UpdateFailureActionPause // a failing rollback stops rather than loops
	p.Changes = append(p.Changes, diffUpdate("rollback", cur.RollbackConfig, &rc)...)
	spec.RollbackConfig = &rc
	return p
}

func updateConfig(o Options) *swarm.UpdateConfig {
	par := o.Parallelism
	if par == 0 {
		par = DefaultParallelism
	}
	fa := string(o.FailureAction)
	if fa == "" {
		fa = string(FailureRollback)
	}
	return &swarm.UpdateConfig{
		Parallelism:     par,
		Delay:           o.Delay,
		FailureAction:   fa,
		Monitor:         orDur(o.Monitor, DefaultMonitor),
		MaxFailureRatio: 0,
		Order:           swarm.UpdateOrderStartFirst,
	}
}

// diffUpdate lists what differs between two update configs, a nil one
// standing for Swarm's defaults.
func diffUpdate(what string, a, b *swarm.UpdateConfig) []string {
	def := swarm.UpdateConfig{Parallelism: 1, FailureAction: swarm.UpdateFailureActionPause, Monitor: 5 * time.Second, Order: swarm.UpdateOrderStopFirst}
	if a == nil {
		a = &def
	}
	var out []string
	add := func(field string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			out = append(out, fmt.Sprintf("%s %s: %v -> %v", what, field, x, y))
		}
	}
	add("order", orStr(a.Order, swarm.UpdateOrderStopFirst), b.Order)
	add("parallelism", a.Parallelism, b.Parallelism)
	add("delay", a.Delay, b.Delay)
	add("monitor", orDur(a.Monitor, 5*time.Second), b.Monitor)
	add("failure action", orStr(a.FailureAction, swarm.UpdateFailureActionPause), b.FailureAction)
	add("max failure ratio", a.MaxFailureRatio, b.MaxFailureRatio)
	return out
}

func orDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
