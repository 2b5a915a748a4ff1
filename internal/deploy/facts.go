package deploy

import (
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/baton-sh/baton/dockerctl"
)

// Facts are everything a deploy decision rests on, read from the engine, the
// request and the state directory before anything on the host changes.
// Decide turns them into a Plan; gather.go collects them (pulling first in a
// deploy, looking only in a dry run); recovery rebuilds what it needs of them
// from the deploy record. Facts are not changed once gathered.
type Facts struct {
	Service Service
	// Remote: the engine is on another machine (see Deployer.Remote).
	Remote bool
	// NginxHere: nginx runs on this machine (see Deployer.NginxHere).
	NginxHere bool
	Old       container.InspectResponse
	// OldImage is the old container's image; its Config is empty when it
	// is gone from the host (a dry run plans without it).
	OldImage image.InspectResponse

	// Ref is the image reference the new container is created from.
	// ImageID, when set, pins that exact image (a rollback whose tag has
	// moved); Ref is then for display.
	Ref     string
	ImageID string
	Pull    PullPolicy
	Force   bool
	// Changed says why the caller wants a redeploy even on the same image
	// (the compose file changed).
	Changed string
	DryRun  bool

	// NewImage is the image to deploy as the host has it: after the pull
	// in a deploy, as it is now in a dry run. NewImageKnown is false when
	// it is not on the host (a dry run that would pull it).
	NewImage      image.InspectResponse
	NewImageKnown bool

	// Settings are this deploy's (flags over recorded over defaults, the
	// port derived from the container when not given); Recorded are the
	// ones the old container was deployed with. A difference redeploys, so
	// that the new settings are recorded.
	Settings Settings
	Recorded Settings
	// ComposeInjected names the configs and secrets compose copied into
	// the old container (see composeInjected), which the new one would
	// not have.
	ComposeInjected []string
	// OwnLabels are the old container's labels the operator set (not its
	// image); IgnoredLabels the image's own baton.*/compose labels, never
	// settings; Sticky the flags recorded for the service once it serves.
	OwnLabels     map[string]string
	IgnoredLabels []string
	Sticky        map[string]string

	// Spec is the new container's configuration (a clone of the old one on
	// the new image, or what the caller's SpecFunc built). It is built only
	// when the image or settings call for a redeploy, so it is nil for an
	// up-to-date service. SpecNote says where it came from.
	Spec     *dockerctl.CloneSpec
	SpecNote string

	// BatonNet is the service's internal network (dockerctl.ServiceNetwork),
	// where the new container warms up and the relay, nginx and probes
	// reach it.
	BatonNet string
	// Leftovers of an interrupted deploy (dry run only: a deploy converges
	// them before it gathers its facts).
	Leftovers []string
}

// sameImage reports whether the new image is the one the old container runs.
func (f *Facts) sameImage() bool {
	return f.NewImageKnown && f.NewImage.ID == f.Old.Image
}
