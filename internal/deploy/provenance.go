package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// Label provenance. Docker copies an image's LABELs onto every container
// made from it, so a container's labels mix what the operator set (docker
// run -l, a compose file) with what the image's author wrote. baton runs as
// root next to the Docker socket; an image author is not trusted. A baton.*
// or com.docker.compose.* label whose value equals the image's own label is
// the author's, and never a setting, an identity or a role.

const (
	composeLabelPrefix = "com.docker.compose."
	composeConfigFiles = "com.docker.compose.project.config_files"
)

// composeBuildLabels are the labels compose puts on images it builds.
var composeBuildLabels = map[string]bool{
	"com.docker.compose.project": true, "com.docker.compose.service": true, "com.docker.compose.version": true,
}

// OwnLabels splits a container's labels into those the operator set and the
// baton.*/com.docker.compose.* labels it ignores because the image carries
// the same key and value. Other labels are returned unchanged: baton gives
// them no meaning. ignored is sorted "key=value".
//
// One exception: compose (v2) labels the images it builds with their
// project and service, which then equal the labels of the containers it
// creates from them. compose also writes the project's config files onto
// every container it creates, and never onto an image; so a container whose
// config-files label is its own keeps its project and service labels.
func OwnLabels(labels, imageLabels map[string]string) (own map[string]string, ignored []string) {
	own = make(map[string]string, len(labels))
	cf, hasCF := labels[composeConfigFiles]
	icf, imageCF := imageLabels[composeConfigFiles]
	composeMade := hasCF && (!imageCF || icf != cf)
	_, gone := imageLabels[imageGoneLabel]
	for k, v := range labels {
		if gone && meaningful(k) {
			ignored = append(ignored, k+"="+v)
			continue
		}
		if meaningful(k) && !(composeMade && composeBuildLabels[k]) {
			if iv, ok := imageLabels[k]; ok && iv == v {
				ignored = append(ignored, k+"="+v)
				continue
			}
		}
		own[k] = v
	}
	slices.Sort(ignored)
	return own, ignored
}

// meaningful reports whether baton or compose read a label of this key.
func meaningful(key string) bool {
	return strings.HasPrefix(key, settingLabelPrefix) || strings.HasPrefix(key, composeLabelPrefix)
}

// imageInspector is the one engine call provenance needs.
type imageInspector interface {
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
}

// imageGoneLabel marks ImageLabels' answer for an image that no longer
// exists. No image label can be told from the operator's then, and OwnLabels
// ignores every baton.* and com.docker.compose.* label.
const imageGoneLabel = "\x00baton: the image is gone"

// ImageLabels returns the labels of the image a container was created from.
// An image that is gone (docker rmi -f removes the image of a stopped
// container, whose labels stay) has none left to compare with: rather than
// take the image author's labels for the operator's (an opt-in, an nginx
// container to attach, another service's upstream file), the answer then
// makes OwnLabels ignore every baton.* and compose label.
func ImageLabels(ctx context.Context, eng imageInspector, imageID string) (map[string]string, error) {
	if imageID == "" {
		return nil, nil
	}
	img, err := eng.ImageInspect(ctx, imageID)
	if errdefs.IsNotFound(err) {
		return map[string]string{imageGoneLabel: ""}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", shortID(imageID), err)
	}
	if img.Config == nil {
		return nil, nil
	}
	return maps.Clone(img.Config.Labels), nil
}

// ContainerOwnLabels is OwnLabels for an inspected container.
func ContainerOwnLabels(ctx context.Context, eng imageInspector, c container.InspectResponse) (own map[string]string, ignored []string, err error) {
	if c.Config == nil {
		return map[string]string{}, nil, nil
	}
	il, err := ImageLabels(ctx, eng, c.Image)
	if err != nil {
		return nil, nil, err
	}
	own, ignored = OwnLabels(c.Config.Labels, il)
	return own, ignored, nil
}

// withOwnLabels returns a copy of c whose labels are only the operator's, for
// code that reads labels (compose's project lookup) and must not follow an
// image author's.
func withOwnLabels(c container.InspectResponse, own map[string]string) container.InspectResponse {
	if c.Config == nil {
		return c
	}
	cfg := *c.Config
	cfg.Labels = own
	c.Config = &cfg
	return c
}
