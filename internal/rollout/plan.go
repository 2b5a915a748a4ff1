// Package rollout deploys one service on several Docker hosts, one host at a
// time, each the usual zero-downtime way (internal/deploy), behind one nginx
// that balances across the hosts' relays. What to do is decided purely from
// facts gathered per host (Decide, AfterHost); Execute walks the decision.
package rollout

import (
	"fmt"
	"regexp"

	"github.com/baton-sh/baton/internal/deploy"
)

// Host is one engine the service runs on.
type Host struct {
	// Name is a docker context name, or a name the hosts file gives an
	// engine URL; it also names the host's state directory.
	Name string `json:"name"`
	// RelayAddress is the address of this host that nginx reaches, where
	// the relay's port is published ("" keeps what the host's record says,
	// else 127.0.0.1).
	RelayAddress string `json:"relay_address,omitempty"`
	// DockerHost is an engine URL (unix:// or tcp://) given in the hosts
	// file instead of a context.
	DockerHost string `json:"docker_host,omitempty"`
}

// validName is what a host name may be: a docker context's name rule, and
// safe as a directory name.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.+-]*$`)

// HostFacts is what gathering found on one host before the rollout.
type HostFacts struct {
	Host string
	// Down says why the engine did not answer ("" when it did).
	Down string
	// Found: the engine has a container by the target's name.
	Found bool
	Image string // the image reference that container runs
}

// DownPolicy says what a host whose engine does not answer does to a
// rollout.
type DownPolicy string

const (
	// DownFail refuses the whole rollout before any host changes.
	DownFail DownPolicy = "fail"
	// DownSkip reports the host and deploys the others.
	DownSkip DownPolicy = "skip"
)

// ParseDownPolicy parses --down.
func ParseDownPolicy(s string) (DownPolicy, error) {
	switch DownPolicy(s) {
	case DownFail, DownSkip:
		return DownPolicy(s), nil
	}
	return "", deploy.Classify(deploy.ErrInvalid, "--down %q: want fail (a host that does not answer stops the rollout before anything changes) or skip (report it and deploy the others)", s)
}

// Action is what the rollout does with one host.
type Action string

const (
	ActionDeploy Action = "deploy"
	ActionSkip   Action = "skip"
)

// Step is one host's part of the plan, in rollout order.
type Step struct {
	Host   string `json:"host"`
	Action Action `json:"action"`
	Reason string `json:"reason,omitempty"`
	Image  string `json:"image,omitempty"` // what it runs now
}

// Plan is the whole rollout, decided before any host changes.
type Plan struct {
	Service string `json:"service"`
	Steps   []Step `json:"steps"`
}

// Decide plans a rollout of service from the facts of each host, in the
// order the hosts were given. A host that is down refuses the rollout unless
// the policy skips it; a host without the service refuses it (deploying the
// others would leave nginx balancing across different versions with no way
// for baton to finish); so does a rollout with no host left to deploy.
func Decide(service string, facts []HostFacts, down DownPolicy) (Plan, error) {
	p := Plan{Service: service}
	if len(facts) == 0 {
		return p, deploy.Classify(deploy.ErrInvalid, "no hosts to deploy %s on (give --context NAME for each, or --hosts FILE)", service)
	}
	seen := map[string]bool{}
	deploying := 0
	for _, f := range facts {
		if !validName.MatchString(f.Host) {
			return p, deploy.Classify(deploy.ErrInvalid, "host name %q: want letters, digits and _ . + - (a docker context's name)", f.Host)
		}
		if seen[f.Host] {
			return p, deploy.Classify(deploy.ErrInvalid, "host %s is given twice; each host is deployed once per rollout", f.Host)
		}
		seen[f.Host] = true
		switch {
		case f.Down != "" && down == DownSkip:
			p.Steps = append(p.Steps, Step{Host: f.Host, Action: ActionSkip, Reason: "engine does not answer: " + f.Down})
		case f.Down != "":
			return p, fmt.Errorf("host %s: engine does not answer, so no host was changed (--down skip deploys the others): %s", f.Host, f.Down)
		case !f.Found:
			return p, deploy.Classify(deploy.ErrNotFound, "host %s has no container %s, so no host was changed (start it there first, or leave the host out)", f.Host, service)
		default:
			p.Steps = append(p.Steps, Step{Host: f.Host, Action: ActionDeploy, Image: f.Image})
			deploying++
		}
	}
	if deploying == 0 {
		return p, fmt.Errorf("no host of %s answers; nothing was changed", service)
	}
	return p, nil
}

// Status is how one host's part of the rollout ended.
type Status string

const (
	StatusDeployed       Status = "deployed"
	StatusUpToDate       Status = "up-to-date"
	StatusFailed         Status = "failed"
	StatusSkipped        Status = "skipped"     // down, and the policy skips
	StatusNotRun         Status = "not-run"     // after the failed host
	StatusRolledBack     Status = "rolled-back" // deployed, then returned to the old image
	StatusRollbackFailed Status = "rollback-failed"
	StatusPlanned        Status = "planned" // dry run
)

// Decision is what the rollout does after one host finished.
type Decision struct {
	Continue bool
	// RollBack lists the hosts to return to their old image, in order.
	RollBack []string
}

// AfterHost decides, once host i of the plan finished with status st, whether
// the rollout goes on, and which earlier hosts go back to their old image:
// a failure stops the rollout (later hosts untouched), and with
// rollbackOnFailure the hosts this rollout changed go back, the most recent
// first. Hosts that were already up to date are left alone: the rollout did
// not change them, so their "old" image is not the one they ran before it.
func AfterHost(p Plan, done []Status, rollbackOnFailure bool) Decision {
	if len(done) == 0 {
		return Decision{Continue: true}
	}
	last := done[len(done)-1]
	if last != StatusFailed {
		return Decision{Continue: true}
	}
	var d Decision
	if !rollbackOnFailure {
		return d
	}
	for i := len(done) - 2; i >= 0; i-- {
		if done[i] == StatusDeployed {
			d.RollBack = append(d.RollBack, p.Steps[i].Host)
		}
	}
	return d
}

// exitRank orders exit codes from best to worst: 0, 2 (bad input, nothing
// changed), 1 (failed, the old container serves), 3 (failed after the old
// container stopped).
func exitRank(code int) int {
	switch code {
	case 0:
		return 0
	case 2:
		return 1
	case 1:
		return 2
	default:
		return 3
	}
}

// WorstExit is the rollout's exit code: the worst of its hosts'.
func WorstExit(codes ...int) int {
	worst := 0
	for _, c := range codes {
		if exitRank(c) > exitRank(worst) {
			worst = c
		}
	}
	return worst
}
