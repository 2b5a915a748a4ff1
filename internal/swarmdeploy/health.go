package swarmdeploy

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"

	"github.com/baton-sh/baton/internal/deploy"
)

// Probe is baton's probe flags for a service. Swarm runs a service's health
// check inside each task, not from baton, so --http-probe becomes the task
// template's HEALTHCHECK: Cmd (a program in the image, e.g. the app's own
// "-probe" mode) run with the URL as its last argument. baton cannot know
// such a program exists in an image (a FROM scratch image has no shell or
// curl), so the operator names it; it never comes from the image.
type Probe struct {
	HTTPPath string   // --http-probe
	TCP      bool     // --tcp-probe: cannot run inside a task, refused
	Cmd      []string // --probe-cmd, split without a shell
	Port     int      // --port; else the service's or image's only port
}

func (p Probe) given() bool { return p.HTTPPath != "" || p.TCP || len(p.Cmd) > 0 || p.Port > 0 }

// Health check timing for a probe baton sets: checked every second while
// the task starts (so a healthy task joins soon), every 5 s after; 3 misses
// make it unhealthy once the start period (the health timeout) is over.
const (
	probeInterval      = 5 * time.Second
	probeStartInterval = time.Second
	probeTimeout       = 5 * time.Second // generous: a busy node slows the check
	probeRetries       = 3
)

// imageFacts is what the new image says about health and ports; known is
// false when this node cannot inspect it (a registry-only image).
type imageFacts struct {
	known       bool
	healthcheck bool
	ports       []int // exposed TCP ports
}

func factsOf(img image.InspectResponse) imageFacts {
	f := imageFacts{known: true}
	if c := img.Config; c != nil {
		f.healthcheck = c.Healthcheck != nil && len(c.Healthcheck.Test) > 0 && c.Healthcheck.Test[0] != "NONE"
		for p := range c.ExposedPorts {
			num, proto, _ := strings.Cut(p, "/")
			if n, err := strconv.Atoi(num); err == nil && (proto == "" || proto == "tcp") {
				f.ports = append(f.ports, n)
			}
		}
		sort.Ints(f.ports)
	}
	return f
}

// decideHealth returns the HEALTHCHECK the task template gets (nil: keep
// the spec's), a line for the plan when it changes, and a note when the
// update cannot be gated on health at all. Errors are bad input (exit 2).
// A stack service's health check belongs in its file, which stack says.
func decideHealth(spec swarm.ServiceSpec, img imageFacts, p Probe, healthTimeout time.Duration, stack bool) (hc *container.HealthConfig, change, note string, err error) {
	name := spec.Name
	cur := spec.TaskTemplate.ContainerSpec.Healthcheck
	if !p.given() {
		if cur == nil && img.known && !img.healthcheck {
			hint := "give --http-probe PATH with --probe-cmd"
			if stack {
				hint = "give it a healthcheck: in the stack file"
			}
			note = fmt.Sprintf("service %s has no HEALTHCHECK: Swarm counts a new task ready as soon as it runs; %s to gate the update on health", name, hint)
		}
		if cur != nil && len(cur.Test) > 0 && cur.Test[0] == "NONE" {
			note = fmt.Sprintf("service %s disables its HEALTHCHECK: Swarm counts a new task ready as soon as it runs", name)
		}
		return nil, "", note, nil
	}
	if err := p.check(name); err != nil {
		return nil, "", "", err
	}
	port, err := probePort(spec, img, p.Port)
	if err != nil {
		return nil, "", "", err
	}
	want := &container.HealthConfig{
		Test:          append(append([]string{"CMD"}, p.Cmd...), fmt.Sprintf("http://127.0.0.1:%d%s", port, p.HTTPPath)),
		Interval:      probeInterval,
		StartInterval: probeStartInterval,
		Timeout:       probeTimeout,
		StartPeriod:   orDur(healthTimeout, DefaultHealth),
		Retries:       probeRetries,
	}
	if cur != nil && sameHealth(*cur, *want) {
		return nil, "", "", nil
	}
	return want, fmt.Sprintf("healthcheck: %s -> %s", describeHealth(cur, img), strings.Join(want.Test[1:], " ")), "", nil
}

// sameHealth compares two health checks without StartInterval: an engine
// older than API 1.44 drops it from the spec it stores, so the one read back
// never equals the one baton sent, and every rerun would restart all tasks.
func sameHealth(a, b container.HealthConfig) bool {
	a.StartInterval, b.StartInterval = 0, 0
	return reflect.DeepEqual(a, b)
}

// check refuses probe flags that cannot become a HEALTHCHECK, whatever the
// image (bad input, before anything is resolved or printed).
func (p Probe) check(name string) error {
	switch {
	case !p.given():
		return nil
	case p.TCP:
		return kinded(deploy.ErrInvalid, "--tcp-probe cannot run for service %s: Swarm runs health checks inside each task, not from baton; use --http-probe PATH with --probe-cmd, or give the image a HEALTHCHECK", name)
	case p.HTTPPath == "" && len(p.Cmd) == 0:
		return kinded(deploy.ErrInvalid, "--port for service %s is the port its probe asks; give --http-probe PATH and --probe-cmd with it (Swarm's tasks need no port for the update)", name)
	case p.HTTPPath == "":
		return kinded(deploy.ErrInvalid, "--probe-cmd for service %s needs --http-probe PATH (the URL it is given)", name)
	case len(p.Cmd) == 0:
		return kinded(deploy.ErrInvalid, "--http-probe for service %s needs --probe-cmd: Swarm runs health checks inside each task, and baton cannot know a program in the image that can make the request (a FROM scratch image has no shell or curl); name one that exits 0 when the URL given as its last argument answers 2xx (e.g. --probe-cmd '/app -probe', or '/bin/wget -q -O /dev/null'), or build a HEALTHCHECK into the image", name)
	case !strings.HasPrefix(p.HTTPPath, "/"):
		return kinded(deploy.ErrInvalid, "--http-probe %q for service %s: want a path starting with /", p.HTTPPath, name)
	}
	return nil
}

// probePort is the port the probe asks: --port, else the one port the
// service targets, else the one TCP port the image exposes.
func probePort(spec swarm.ServiceSpec, img imageFacts, flag int) (int, error) {
	if flag > 0 {
		return flag, nil
	}
	var targets []int
	if ep := spec.EndpointSpec; ep != nil {
		for _, pc := range ep.Ports {
			if pc.Protocol == "" || pc.Protocol == swarm.PortConfigProtocolTCP {
				targets = append(targets, int(pc.TargetPort))
			}
		}
	}
	if len(targets) == 1 {
		return targets[0], nil
	}
	if len(targets) == 0 && len(img.ports) == 1 {
		return img.ports[0], nil
	}
	return 0, kinded(deploy.ErrInvalid, "--http-probe for service %s: give --port, the task's port the probe asks (the service targets %v, the image exposes %v)", spec.Name, targets, img.ports)
}

func describeHealth(cur *container.HealthConfig, img imageFacts) string {
	switch {
	case cur != nil && len(cur.Test) > 1:
		return strings.Join(cur.Test[1:], " ")
	case img.healthcheck:
		return "the image's HEALTHCHECK"
	}
	return "none"
}
