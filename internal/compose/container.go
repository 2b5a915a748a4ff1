package compose

import (
	"context"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
)

// SpecForContainer is deploy.Deployer.SpecFor for compose containers named
// directly (`baton deploy shop-web-1`, cron, watch, webhook): the new
// container is what a compose deploy of that replica would make, so compose
// keeps owning it and `up -d` leaves it alone. Without this, the copied
// labels would name the old image (v2 recreates on that) and the old config
// hash (v1 hashes the image too), and the user's next `up -d` would
// recreate the service stop-first.
//
// When the project cannot be rendered here (the tool or the files are
// missing, as in baton's own container) it falls back to a copy with the
// v2 image label brought up to date, and says what compose may still do.
func SpecForContainer(eng Engine) func(ctx context.Context, old container.InspectResponse, newRef string, dryRun bool, report func(string)) deploy.SpecFunc {
	return func(_ context.Context, old container.InspectResponse, newRef string, dryRun bool, report func(string)) deploy.SpecFunc {
		l := old.Config.Labels
		service := l[LabelService]
		if l[LabelProject] == "" || service == "" || l[LabelOneoff] == "True" {
			return nil
		}
		return func(ctx context.Context, old container.InspectResponse, oldImg, newImg image.InspectResponse, ref string) (*dockerctl.CloneSpec, string, error) {
			// The container's labels name the project; no need to look it up.
			p, err := projectOf(ctx, l, nil, "")
			if err != nil {
				return labelledCopy(old, oldImg, newImg, ref, fmt.Sprintf("compose project %s could not be read here (%v)", l[LabelProject], err))
			}
			// Run by cron or a watcher, baton may lack the variables the
			// user's shell gives compose; blanks would change the
			// container, so follow the file only when it renders whole.
			out, warnings, err := p.Tool.runWarnings(ctx, p.Dir, p.global(), "config")
			if err != nil {
				return labelledCopy(old, oldImg, newImg, ref, err.Error())
			}
			if unset := unsetVariables(warnings); len(unset) > 0 {
				return labelledCopy(old, oldImg, newImg, ref, fmt.Sprintf("compose file %s uses variables not set here (%s; put them in the project's .env)", strings.Join(p.Files, ", "), strings.Join(unset, ", ")))
			}
			cfg, err := ParseConfig(out)
			if err != nil {
				return labelledCopy(old, oldImg, newImg, ref, err.Error())
			}
			svc, ok := cfg.Services[service]
			if !ok {
				return labelledCopy(old, oldImg, newImg, ref, fmt.Sprintf("service %s is no longer in %s", service, strings.Join(p.Files, ", ")))
			}
			if svc.Image == "" {
				// Built by compose: asking it for the container could start a build.
				return labelledCopy(old, oldImg, newImg, ref, fmt.Sprintf("service %s has no image: in %s (compose builds it)", service, strings.Join(p.Files, ", ")))
			}
			if !sameImage(svc.Image, ref) {
				spec, err := dockerctl.CloneConfig(old, oldImg, newImg, ref)
				return spec, fmt.Sprintf("%s: the compose file names %s, not %s, so the next %s up -d will replace it with the file's image", service, svc.Image, ref, p.Tool.Argv[0]), err
			}
			hashNow, err := p.Hash(ctx, service)
			if err != nil {
				return labelledCopy(old, oldImg, newImg, ref, err.Error())
			}
			return p.specFor(eng, service, svc, l[LabelConfigHash] != hashNow, dryRun, report)(ctx, old, oldImg, newImg, ref)
		}
	}
}

// labelledCopy is the fallback: a plain copy whose v2 image label names the
// new image, which is all v2 checks besides the file's hash.
func labelledCopy(old container.InspectResponse, oldImg, newImg image.InspectResponse, ref, why string) (*dockerctl.CloneSpec, string, error) {
	spec, err := dockerctl.CloneConfig(old, oldImg, newImg, ref)
	if err != nil {
		return nil, "", err
	}
	note := why + "; copied the running container"
	if _, ok := spec.Config.Labels[LabelImage]; ok {
		spec.Config.Labels[LabelImage] = newImg.ID
		note += " and set its compose image label, so docker compose up -d keeps it while the file is unchanged"
	} else {
		note += "; docker-compose (v1) hashes the image, so its next up -d will recreate the container"
	}
	return spec, note, nil
}

// sameImage compares image references as the engine would resolve them
// (nginx = docker.io/library/nginx:latest).
func sameImage(a, b string) bool {
	na, errA := reference.ParseNormalizedNamed(a)
	nb, errB := reference.ParseNormalizedNamed(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return reference.TagNameOnly(na).String() == reference.TagNameOnly(nb).String()
}
