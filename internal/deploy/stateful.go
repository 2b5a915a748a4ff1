package deploy

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/baton-sh/baton/dockerctl"
)

// LabelStateful overrides baton's guess of whether a container keeps state
// that a second copy must not touch: true refuses, false allows.
const LabelStateful = "baton.stateful"

// statefulImages are images whose data lives in their volume and whose
// process assumes it is the volume's only user. Starting a second copy on
// the same volume (which a zero-downtime replacement must do) corrupts or
// locks the data, so baton refuses them unless told otherwise.
var statefulImages = map[string]bool{
	"postgres": true, "postgis": true, "mysql": true, "mariadb": true, "percona": true,
	"mongo": true, "mongodb": true, "redis": true, "valkey": true, "keydb": true,
	"elasticsearch": true, "opensearch": true, "rabbitmq": true, "cassandra": true,
	"couchdb": true, "influxdb": true, "zookeeper": true, "kafka": true, "etcd": true,
	"clickhouse-server": true, "neo4j": true, "minio": true, "cockroach": true,
}

// checkStateful refuses to start a second copy of a stateful service (a
// database) on its own volume. The verdict comes from the baton.stateful
// label if set, else from the image's name.
func checkStateful(spec *dockerctl.CloneSpec, _ Settings) error {
	return statefulError(isStateful(spec.Config.Image, spec.Config.Labels, dataVolumes(spec.HostConfig, nil)))
}

// checkOldStateful is checkStateful on the running container, so a refusal
// comes before anything is pulled.
func checkOldStateful(c container.InspectResponse) error {
	return statefulError(isStateful(c.Config.Image, c.Config.Labels, dataVolumes(c.HostConfig, c.Mounts)))
}

func statefulError(stateful bool, why string) error {
	if !stateful {
		return nil
	}
	return classify(ErrUnsupported, "%s; a second copy on the same data would corrupt it, so baton will not replace it by starting one. Upgrade it in a maintenance window (docker compose up -d, or docker stop/run), or label it %s=false if two copies are safe", why, LabelStateful)
}

func isStateful(image string, labels map[string]string, vols []string) (bool, string) {
	if v, ok := labels[LabelStateful]; ok {
		b, err := strconv.ParseBool(v)
		if err == nil && !b {
			return false, ""
		}
		if err == nil {
			return true, fmt.Sprintf("it is labelled %s=true", LabelStateful)
		}
	}
	name := imageName(image)
	if !statefulImages[name] {
		return false, ""
	}
	if len(vols) == 0 {
		return false, "" // a database without a volume keeps nothing across deploys
	}
	return true, fmt.Sprintf("image %s is a database (%s) that keeps its data in %s", image, name, strings.Join(vols, ", "))
}

// imageName is the last path component of an image reference: postgres for
// docker.io/library/postgres:16-alpine or registry.local/mirror/postgres.
func imageName(ref string) string {
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		return path.Base(reference.Path(named))
	}
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return path.Base(ref)
}

// dataVolumes lists the volumes and bind mounts a container writes to:
// those in its host config and, for a running container, the mount points
// Docker made (which include anonymous volumes from an image's VOLUME).
func dataVolumes(hc *container.HostConfig, points []container.MountPoint) []string {
	var out []string
	seen := map[string]bool{}
	add := func(kind, src, dst string) {
		if !seen[dst] {
			seen[dst] = true
			out = append(out, describeMount(kind, src, dst))
		}
	}
	for _, m := range hc.Mounts {
		if (m.Type == mount.TypeVolume || m.Type == mount.TypeBind) && !m.ReadOnly {
			add(string(m.Type), m.Source, m.Target)
		}
	}
	for _, b := range hc.Binds {
		parts := strings.Split(b, ":")
		if len(parts) >= 2 && !(len(parts) == 3 && strings.Contains(parts[2], "ro")) {
			add("volume", parts[0], parts[1])
		}
	}
	for _, p := range points {
		if (p.Type == mount.TypeVolume || p.Type == mount.TypeBind) && p.RW {
			src := p.Name
			if src == "" {
				src = p.Source
			}
			add(string(p.Type), src, p.Destination)
		}
	}
	return out
}

func describeMount(kind, src, dst string) string {
	if len(src) == 64 {
		src = src[:12] // anonymous volume
	}
	return fmt.Sprintf("%s %s at %s", kind, src, dst)
}
