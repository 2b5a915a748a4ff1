package compose

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
)

// specFor builds the deploy.SpecFunc for one replica of service: the new
// container is what compose would create for the service now.
//
//   - The compose file did not change (the replica's config hash is what the
//     tool computes now): follow the running container, on the new image.
//   - It changed: let compose itself create the container it wants (not
//     started, one more replica, no recreate) and copy that; it carries
//     exactly the file's environment, command, ports, volumes, networks and
//     the labels compose will later compare. The copy is what baton starts;
//     compose's own is removed unstarted.
//   - It changed but the service has a container_name (compose cannot make a
//     second one): follow the file's image, environment, command,
//     entrypoint, labels, user and working_dir on a copy of the running one.
//
// In every case the compose labels are set so that `up -d` leaves the new
// container alone: config hash, container number, and (v2) image ID.
//
// A dry run must create nothing, so for a changed file it plans with the
// container_name way (the file's settings on a copy) and says so.
func (p *Project) specFor(eng Engine, service string, svc ServiceConfig, changed, dryRun bool, report func(string)) deploy.SpecFunc {
	return func(ctx context.Context, old container.InspectResponse, oldImg, newImg image.InspectResponse, ref string) (*dockerctl.CloneSpec, string, error) {
		var spec *dockerctl.CloneSpec
		var note string
		var err error
		hash := old.Config.Labels[LabelConfigHash]
		switch {
		case !changed:
			note = fmt.Sprintf("compose file unchanged for %s: following the running container, on %s", service, ref)
			spec, err = dockerctl.CloneConfig(old, oldImg, newImg, ref)
		case dryRun && svc.ContainerName == "":
			note = fmt.Sprintf("compose file changed for %s: the deploy follows it (compose creates the container it wants for %s); this plan shows the file's image, environment, command, entrypoint, labels, user and working_dir, not changes to its ports, volumes or networks", service, service)
			if spec, err = dockerctl.CloneConfig(old, oldImg, newImg, ref); err == nil {
				applyFile(spec, svc)
			}
			hash = ""
		case svc.ContainerName == "":
			note = fmt.Sprintf("compose file changed for %s: following it (the configuration compose creates for %s now)", service, service)
			if p.Tool.Major == 1 {
				// v1's hash covers the local image ID too.
				note = fmt.Sprintf("compose file or image changed for %s: following what compose creates for %s now", service, service)
			}
			spec, hash, err = p.candidateSpec(ctx, eng, service, newImg, report)
		default:
			note = fmt.Sprintf("compose file changed for %s (container_name %s): following its image, environment, command, entrypoint, labels, user and working_dir; other changes (ports, volumes, networks) need %s up -d --force-recreate %s, since the new container carries the file's config hash", service, svc.ContainerName, strings.Join(p.Tool.Argv, " "), service)
			if spec, err = dockerctl.CloneConfig(old, oldImg, newImg, ref); err == nil {
				applyFile(spec, svc)
			}
			hash = ""
		}
		if err != nil {
			return nil, "", err
		}
		// v1 hashes the local image ID too, so a new image means a new hash
		// even for an unchanged file; ask the tool now that it is pulled.
		if hash == "" || p.Tool.Major == 1 {
			if hash, err = p.Hash(ctx, service); err != nil {
				return nil, "", err
			}
		}
		l := spec.Config.Labels
		l[LabelConfigHash] = hash
		l[LabelNumber] = old.Config.Labels[LabelNumber]
		l[LabelProject] = p.Name
		l[LabelService] = service
		l[LabelOneoff] = "False"
		if v := old.Config.Labels[LabelVersion]; v != "" && l[LabelVersion] == "" {
			l[LabelVersion] = v
		}
		if p.Tool.Major == 2 {
			l[LabelImage] = newImg.ID
		}
		delete(l, LabelReplace)
		spec.Rediff(old, oldImg, newImg)
		return spec, note, nil
	}
}

// candidateSpec has compose create the container it wants for service (one
// more replica, not started, nothing else touched), copies its
// configuration and removes it.
func (p *Project) candidateSpec(ctx context.Context, eng Engine, service string, newImg image.InspectResponse, report func(string)) (*dockerctl.CloneSpec, string, error) {
	before, err := p.Replicas(ctx, eng, service)
	if err != nil {
		return nil, "", err
	}
	known := map[string]bool{}
	for _, c := range before {
		known[c.ID] = true
	}
	scale := fmt.Sprintf("%s=%d", service, len(before)+1)
	args := []string{"--no-start", "--no-deps", "--no-recreate", "--scale", scale}
	if p.Tool.Major == 2 {
		args = append(args, "--pull", "never")
	}
	report(fmt.Sprintf("asking %s to create the container it wants for %s (not started)", strings.Join(p.Tool.Argv, " "), service))
	if _, err := p.run(ctx, "up", append(args, service)...); err != nil {
		return nil, "", fmt.Errorf("having compose create the new container: %w", err)
	}
	after, err := p.Replicas(ctx, eng, service)
	if err != nil {
		return nil, "", err
	}
	var cand *container.Summary
	for i := range after {
		if !known[after[i].ID] {
			cand = &after[i]
		}
	}
	if cand == nil {
		return nil, "", fmt.Errorf("%s up --scale %s created no new container", strings.Join(p.Tool.Argv, " "), scale)
	}
	defer func() {
		// Never started; baton starts its own copy.
		if err := eng.ContainerRemove(context.WithoutCancel(ctx), cand.ID, container.RemoveOptions{Force: true}); err != nil {
			report(fmt.Sprintf("warning: removing compose's unstarted container %s: %v", strings.TrimPrefix(cand.Names[0], "/"), err))
		}
	}()
	c, err := eng.ContainerInspect(ctx, cand.ID)
	if err != nil {
		return nil, "", err
	}
	spec, err := dockerctl.CloneConfig(c, newImg, newImg, c.Config.Image)
	if err != nil {
		return nil, "", err
	}
	return spec, c.Config.Labels[LabelConfigHash], nil
}

// applyFile sets what a container_name service's compose file says on a
// copy of its running container.
func applyFile(spec *dockerctl.CloneSpec, svc ServiceConfig) {
	spec.Config.Env = svc.EnvList()
	spec.Config.Entrypoint = []string(svc.Entrypoint)
	spec.Config.Cmd = []string(svc.Command)
	spec.Config.WorkingDir = svc.WorkingDir
	spec.Config.User = svc.User
	labels := map[string]string{}
	for k, v := range spec.Config.Labels {
		if strings.HasPrefix(k, "com.docker.compose.") {
			labels[k] = v
		}
	}
	for k, v := range svc.Labels {
		labels[k] = v
	}
	spec.Config.Labels = labels
}
