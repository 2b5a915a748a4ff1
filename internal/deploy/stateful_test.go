package deploy

import (
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/baton-sh/baton/dockerctl"
)

func TestCheckStateful(t *testing.T) {
	spec := func(image string, labels map[string]string, mounts ...mount.Mount) *dockerctl.CloneSpec {
		return &dockerctl.CloneSpec{Config: &container.Config{Image: image, Labels: labels}, HostConfig: &container.HostConfig{Mounts: mounts}}
	}
	data := mount.Mount{Type: mount.TypeVolume, Source: "shop_db-data", Target: "/var/lib/postgresql/data"}
	cases := []struct {
		name string
		spec *dockerctl.CloneSpec
		want bool
	}{
		{"postgres with a volume", spec("postgres:16-alpine", nil, data), true},
		{"postgres from a registry path", spec("registry.local:5000/mirror/postgres:16", nil, data), true},
		{"postgres with no volume keeps nothing", spec("postgres:16", nil), false},
		{"postgres with a read-only volume", spec("postgres:16", nil, mount.Mount{Type: mount.TypeVolume, Source: "x", Target: "/x", ReadOnly: true}), false},
		{"web app with an uploads volume", spec("shop/web:1.4", nil, data), false},
		{"label says stateful", spec("shop/queue:1", map[string]string{LabelStateful: "true"}), true},
		{"label overrides the image name", spec("redis:7", map[string]string{LabelStateful: "false"}, data), false},
		{"bind-mounted data", &dockerctl.CloneSpec{Config: &container.Config{Image: "mysql:8"}, HostConfig: &container.HostConfig{Binds: []string{"/srv/mysql:/var/lib/mysql"}}}, true},
	}
	for _, tc := range cases {
		err := checkStateful(tc.spec, Settings{})
		if got := err != nil; got != tc.want {
			t.Errorf("%s: refused=%v, want %v (%v)", tc.name, got, tc.want, err)
		}
		if err != nil && (!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "maintenance window")) {
			t.Errorf("%s: error %q should be ErrUnsupported and say what to do", tc.name, err)
		}
	}
}
