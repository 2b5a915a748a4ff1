package deploy

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/baton-sh/baton/dockerctl"
)

// PullPolicy says when the new image is pulled.
type PullPolicy string

const (
	PullAlways  PullPolicy = "always"
	PullMissing PullPolicy = "missing"
	PullNever   PullPolicy = "never"
)

// ParsePullPolicy validates a --pull value.
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch p := PullPolicy(s); p {
	case PullAlways, PullMissing, PullNever:
		return p, nil
	}
	return "", classify(ErrInvalid, "--pull %q: want always, missing or never", s)
}

// Request is one deploy as the user asked for it.
type Request struct {
	Target       string            // container name or ID
	Image        string            // new image reference; "" re-pulls the one the container runs
	ImageID      string            // pin to this local image ID (rollback); Image is then only for display
	Pull         PullPolicy        // default always
	Force        bool              // deploy even when the image ID did not change
	DryRun       bool              // print the plan, change nothing
	Flags        map[string]string // settings the user gave as flags, by setting name
	PullProgress dockerctl.PullProgress
	Trigger      string // what started it: cli, rollback, watch, webhook (for the journal)
	Who          string // who asked: a user, a webhook's remote address (for the journal)

	// Spec, if set, builds the new container's configuration instead of a
	// plain clone of the old one onto the new image; compose targets use it
	// to create what compose would create now. It runs after the pull.
	Spec SpecFunc
	// Changed, if set, says why the deploy must run even when the image ID
	// did not change (the compose file changed, say).
	Changed string

	// expectImageID makes the deploy fail unless the pulled image has this
	// ID (a rollback whose image had to be pulled again by its tag).
	expectImageID string
}

// SpecFunc builds the new container's configuration from the old
// container, its image and the new image. note says where the configuration
// comes from, for the output.
type SpecFunc func(ctx context.Context, old container.InspectResponse, oldImg, newImg image.InspectResponse, ref string) (spec *dockerctl.CloneSpec, note string, err error)

// Outcome is how a deploy ended.
type Outcome string

const (
	OutcomeDeployed Outcome = "deployed"
	OutcomeUpToDate Outcome = "up-to-date"
	OutcomeDryRun   Outcome = "dry-run"
	OutcomeFailed   Outcome = "failed"
)

// Result describes a finished deploy, successful or not.
type Result struct {
	Target     string        `json:"target"` // as the caller named it
	Trigger    string        `json:"trigger,omitempty"`
	Who        string        `json:"who,omitempty"`
	Service    string        `json:"service"`
	Outcome    Outcome       `json:"outcome"`
	Container  string        `json:"container"` // the serving container's name
	OldID      string        `json:"old_id,omitempty"`
	NewID      string        `json:"new_id,omitempty"`
	OldImage   string        `json:"old_image,omitempty"`
	OldImageID string        `json:"old_image_id,omitempty"`
	NewImage   string        `json:"new_image,omitempty"`
	NewImageID string        `json:"new_image_id,omitempty"`
	Traffic    string        `json:"traffic"`
	Duration   time.Duration `json:"duration_ns"`
	Phases     []PhaseTime   `json:"phases,omitempty"`
	Plan       *Plan         `json:"plan,omitempty"`
	// Drain says what the drain of the old container waited for and cut.
	Drain      *DrainReport `json:"drain,omitempty"`
	Notes      []string     `json:"notes,omitempty"`
	Error      string       `json:"error,omitempty"`
	ExitCode   int          `json:"exit_code"` // the documented exit code of this outcome
	OldServing bool         `json:"old_serving"`
	Recovered  string       `json:"recovered,omitempty"` // what converging leftovers did, if anything
	DeployID   string       `json:"deploy_id,omitempty"`
	StartedAt  time.Time    `json:"started_at"`
}

// PhaseTime is how long one phase took.
type PhaseTime struct {
	Phase    Phase         `json:"phase"`
	Duration time.Duration `json:"duration_ns"`
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
