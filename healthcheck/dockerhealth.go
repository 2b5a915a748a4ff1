package healthcheck

import (
	"slices"
	"time"

	"github.com/docker/docker/api/types/container"
)

// HasDockerHealthcheck reports whether cfg configures a HEALTHCHECK that
// Docker will run, that is Spec.DockerHealth can be used. Pass the Config of
// an inspected container (the daemon merges the image's HEALTHCHECK into it
// at create); an empty Test there means none, and ["NONE"] means disabled.
func HasDockerHealthcheck(cfg *container.Config) bool {
	if cfg == nil || cfg.Healthcheck == nil || len(cfg.Healthcheck.Test) == 0 {
		return false
	}
	return cfg.Healthcheck.Test[0] != "NONE"
}

// Docker's defaults for a HEALTHCHECK that leaves them out (moby's
// daemon/health.go).
const (
	dockerDefaultInterval = 30 * time.Second
	dockerDefaultTimeout  = 30 * time.Second
)

// Healthcheck is a container's HEALTHCHECK as something to run: the
// command Docker execs for it, its timeout, and the interval Docker waits
// before its first run (its start interval when one is set).
type Healthcheck struct {
	Argv     []string
	Timeout  time.Duration
	Interval time.Duration
}

// DockerHealthcheck reads cfg's HEALTHCHECK (see HasDockerHealthcheck) as
// Docker runs it: CMD as its arguments, CMD-SHELL through /bin/sh -c. ok is
// false when there is none or it is in a form Docker would not run.
func DockerHealthcheck(cfg *container.Config) (h Healthcheck, ok bool) {
	if !HasDockerHealthcheck(cfg) {
		return h, false
	}
	hc := cfg.Healthcheck
	switch hc.Test[0] {
	case "CMD":
		h.Argv = slices.Clone(hc.Test[1:])
	case "CMD-SHELL":
		if len(hc.Test) != 2 {
			return h, false
		}
		// Through the container's SHELL when it has one, as Docker does
		// (moby's getShell); /bin/sh -c otherwise.
		shell := []string{"/bin/sh", "-c"}
		if len(cfg.Shell) > 0 {
			shell = cfg.Shell
		}
		h.Argv = append(slices.Clone(shell), hc.Test[1])
	default:
		return h, false
	}
	if len(h.Argv) == 0 || h.Argv[0] == "" {
		return h, false
	}
	h.Timeout, h.Interval = hc.Timeout, hc.Interval
	if h.Timeout <= 0 {
		h.Timeout = dockerDefaultTimeout
	}
	if h.Interval <= 0 {
		h.Interval = dockerDefaultInterval
	}
	if hc.StartPeriod > 0 && hc.StartInterval > 0 && hc.StartInterval < h.Interval {
		// Docker 25 and later check this often during the start period
		// (older engines ignore it, and baton then runs the check early
		// for nothing but a few execs).
		h.Interval = hc.StartInterval
	}
	return h, true
}
