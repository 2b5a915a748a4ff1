package deploy

import (
	"context"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// imagesByID answers ImageInspect from a map; a missing ID is NotFound, as
// the engine answers for the image of a stopped container removed with
// docker rmi -f (the container keeps the image's labels; tried on this
// host's Docker 20.10).
type imagesByID map[string]map[string]string

func (m imagesByID) ImageInspect(_ context.Context, id string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	l, ok := m[id]
	if !ok {
		return image.InspectResponse{}, errdefs.NotFound(context.Canceled)
	}
	cfg := dockerspec.DockerOCIImageConfig{}
	cfg.Labels = l
	return image.InspectResponse{ID: id, Config: &cfg}, nil
}

// A container whose image is gone: its baton.* and compose labels cannot be
// told from the image's, and none counts (an image's baton.enable would
// otherwise opt it in to webhooks, its baton.nginx-container name a
// container to attach and HUP). With its image still there and carrying
// none of them, the same labels are the operator's (the positive control).
func TestImageGoneLabelsIgnored(t *testing.T) {
	labels := map[string]string{
		"baton.enable": "true", "baton.nginx-container": "victim", "baton.nginx-upstream": "/etc/nginx/baton/other.conf",
		"com.docker.compose.project": "shop", "org.example.kept": "yes",
	}
	c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{Image: "sha256:gone"}, Config: &container.Config{Labels: labels}}
	own, ignored, err := ContainerOwnLabels(t.Context(), imagesByID{}, c)
	if err != nil {
		t.Fatal(err)
	}
	for k := range labels {
		_, kept := own[k]
		if meaningful(k) == kept || meaningful(k) != slices.Contains(ignored, k+"="+labels[k]) {
			t.Errorf("image gone: label %s kept=%v ignored=%v", k, kept, ignored)
		}
	}
	res, err := Policy{}.Resolve(Sources{Labels: labels, ImageLabels: map[string]string{imageGoneLabel: ""}})
	if err != nil || res.Settings.NginxContainer != "" || res.Settings.NginxUpstream != "" {
		t.Fatalf("image gone: settings %+v, err %v", res.Settings, err)
	}

	own, ignored, err = ContainerOwnLabels(t.Context(), imagesByID{"sha256:gone": {"org.example.other": "1"}}, c)
	if err != nil || len(ignored) != 0 || len(own) != len(labels) {
		t.Fatalf("positive control, image present: own %v ignored %v err %v", own, ignored, err)
	}
}
