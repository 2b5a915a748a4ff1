package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/baton-sh/baton/healthcheck"
)

// minRunning is how long a container with no health information at all must
// keep running to count as started; it catches an app that crashes at once.
const minRunning = 2 * time.Second

// runningFor is a probe that passes once the container has been running for
// d. healthcheck.Wait fails fast if it dies meanwhile.
type runningFor struct {
	eng Engine
	id  string
	d   time.Duration
}

func (p runningFor) String() string { return fmt.Sprintf("running for %s", p.d) }

func (p runningFor) Check(ctx context.Context) error {
	c, err := p.eng.ContainerInspect(ctx, p.id)
	if err != nil {
		return err
	}
	if !c.State.Running {
		return fmt.Errorf("not running (%s)", c.State.Status)
	}
	started, err := time.Parse(time.RFC3339Nano, c.State.StartedAt)
	if err != nil {
		return fmt.Errorf("start time %q: %w", c.State.StartedAt, err)
	}
	if up := time.Since(started); up < p.d {
		return fmt.Errorf("running for only %s", up.Round(100*time.Millisecond))
	}
	return nil
}

// describeProgress is one line about a health wait in progress.
func describeProgress(p healthcheck.Progress) string {
	var parts []string
	if p.DockerHealth != "" {
		parts = append(parts, "docker health "+p.DockerHealth)
	}
	if p.Probes > 0 {
		parts = append(parts, fmt.Sprintf("probes %d/%d", p.ProbesPassed, p.Probes))
	}
	if p.LastProbeError != "" {
		parts = append(parts, "last probe: "+p.LastProbeError)
	}
	if len(parts) == 0 {
		parts = append(parts, p.State)
	}
	return fmt.Sprintf("%s (%s)", strings.Join(parts, ", "), p.Elapsed.Round(time.Second))
}

// earlyHealthInterval is how often a deploy runs the new container's
// HEALTHCHECK itself until Docker says healthy. An exec costs the engine
// tens of milliseconds, so not every 50 ms as a probe's request.
const earlyHealthInterval = 250 * time.Millisecond

// remoteEarlyHealthInterval is that for an engine on another machine, where
// each exec may cost an ssh session as well.
const remoteEarlyHealthInterval = time.Second

// imageHealthcheck runs the container's own HEALTHCHECK in it, as Docker
// does (as the container's user, bounded by the check's timeout): the
// command is the one the container's configuration gives Docker, run
// inside the container, never on the host.
type imageHealthcheck struct {
	eng Engine
	id  string
	hc  healthcheck.Healthcheck
}

func (p imageHealthcheck) String() string { return "its HEALTHCHECK, run by baton," }

func (p imageHealthcheck) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.hc.Timeout)
	defer cancel()
	res, err := p.eng.Exec(ctx, p.id, p.hc.Argv)
	if err != nil {
		// Not err itself: it quotes the command, which may hold a secret.
		return errors.New("HEALTHCHECK could not be run")
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("HEALTHCHECK exited %d", res.ExitCode)
	}
	return nil
}
