package dockerctl

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/blkiodev"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/go-connections/nat"
	units "github.com/docker/go-units"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	testOldID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testNewID = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

// testImage returns a fresh image whose defaults all carry the given
// version, so a test can tell which image a value came from.
func testImage(v string) image.InspectResponse {
	id := strings.Repeat(map[string]string{"v1": "1", "v2": "2"}[v], 64)
	return image.InspectResponse{
		ID: "sha256:" + id,
		Config: &dockerspec.DockerOCIImageConfig{
			ImageConfig: ocispec.ImageConfig{
				Env:          []string{"PATH=/usr/bin:/bin", "VERSION=" + v, "ONLY_" + strings.ToUpper(v) + "=1"},
				Entrypoint:   []string{"/app-" + v},
				Cmd:          []string{"serve-" + v},
				WorkingDir:   "/srv/" + v,
				User:         "app-" + v,
				StopSignal:   "SIGQUIT",
				ExposedPorts: map[string]struct{}{"8080/tcp": {}},
				Volumes:      map[string]struct{}{"/data-" + v: {}},
				Labels: map[string]string{
					"org.example.version":        v,
					"org.example.shared":         "same",
					"com.docker.compose.project": "shop",
				},
			},
			DockerOCIImageConfigExt: dockerspec.DockerOCIImageConfigExt{
				Healthcheck: &dockerspec.HealthcheckConfig{
					Test:     []string{"CMD", "/app-" + v, "-probe"},
					Interval: 5 * time.Second,
					Retries:  3,
				},
			},
		},
	}
}

// engineCreate builds the inspect data of a container created from img with
// the user's settings, merging the image's defaults in the way the engine
// does (daemon/create.go and merge in daemon/commit.go). It is the tests'
// oracle for what a container ends up with; the integration test checks the
// same against the real engine.
func engineCreate(id, name string, user container.Config, hc container.HostConfig, img image.InspectResponse) container.InspectResponse {
	ic := imageConfig(img)
	c := user
	c.Env = slices.Clone(user.Env)
	for _, e := range ic.Env {
		k, _, _ := strings.Cut(e, "=")
		if !slices.ContainsFunc(user.Env, func(u string) bool { uk, _, _ := strings.Cut(u, "="); return uk == k }) {
			c.Env = append(c.Env, e)
		}
	}
	c.Labels = map[string]string{}
	maps.Copy(c.Labels, ic.Labels)
	maps.Copy(c.Labels, user.Labels)
	c.ExposedPorts = nat.PortSet{}
	for p := range ic.ExposedPorts {
		c.ExposedPorts[nat.Port(p)] = struct{}{}
	}
	maps.Copy(c.ExposedPorts, user.ExposedPorts)
	c.Volumes = map[string]struct{}{}
	maps.Copy(c.Volumes, ic.Volumes)
	maps.Copy(c.Volumes, user.Volumes)
	if len(user.Entrypoint) == 0 {
		if len(user.Cmd) == 0 {
			c.Cmd = ic.Cmd
		}
		c.Entrypoint = ic.Entrypoint
	}
	if len(c.Entrypoint) == 1 && c.Entrypoint[0] == "" {
		c.Entrypoint = nil
	}
	if c.WorkingDir == "" {
		c.WorkingDir = ic.WorkingDir
	}
	if c.User == "" {
		c.User = ic.User
	}
	if c.StopSignal == "" {
		c.StopSignal = ic.StopSignal
	}
	switch {
	case user.Healthcheck == nil && ic.Healthcheck != nil:
		h := *ic.Healthcheck
		c.Healthcheck = &h
	case user.Healthcheck != nil && ic.Healthcheck != nil:
		h := *user.Healthcheck
		if len(h.Test) == 0 {
			h.Test = ic.Healthcheck.Test
		}
		if h.Interval == 0 {
			h.Interval = ic.Healthcheck.Interval
		}
		if h.Timeout == 0 {
			h.Timeout = ic.Healthcheck.Timeout
		}
		if h.StartPeriod == 0 {
			h.StartPeriod = ic.Healthcheck.StartPeriod
		}
		if h.Retries == 0 {
			h.Retries = ic.Healthcheck.Retries
		}
		c.Healthcheck = &h
	}
	if c.Hostname == "" {
		c.Hostname = id[:12]
	}
	nets := map[string]*network.EndpointSettings{}
	switch mode := hc.NetworkMode; {
	case mode == "" || mode.IsDefault():
		hc.NetworkMode = network.NetworkDefault
		nets[network.NetworkBridge] = &network.EndpointSettings{}
	default:
		nets[string(mode)] = &network.EndpointSettings{}
	}
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: id, Name: "/" + name, Image: img.ID, HostConfig: &hc},
		Config:            &c,
		NetworkSettings:   &container.NetworkSettings{Networks: nets},
	}
}

// createOld is engineCreate for the usual old container "web" on image v1.
func createOld(user container.Config, hc container.HostConfig) container.InspectResponse {
	user.Image = "shop:v1"
	return engineCreate(testOldID, "web", user, hc, testImage("v1"))
}

// cloneToV2 clones old onto image v2 and returns the spec and the Config the
// engine would give the new container.
func cloneToV2(t *testing.T, old container.InspectResponse) (*CloneSpec, container.Config) {
	t.Helper()
	spec, err := CloneConfig(old, testImage("v1"), testImage("v2"), "shop:v2")
	if err != nil {
		t.Fatalf("CloneConfig: %v", err)
	}
	if spec.Config.Image != "shop:v2" {
		t.Errorf("Config.Image = %q, want shop:v2", spec.Config.Image)
	}
	created := engineCreate(testNewID, "web-new", *spec.Config, *spec.HostConfig, testImage("v2"))
	return spec, *created.Config
}

func TestCloneConfigEnv(t *testing.T) {
	tests := []struct {
		name     string
		user     []string
		wantSpec []string
		// wantEnv are entries the new container must have; absent are keys
		// it must not have.
		wantEnv []string
		absent  []string
	}{
		{name: "image defaults follow the new image", user: nil, wantSpec: nil,
			wantEnv: []string{"VERSION=v2", "ONLY_V2=1"}, absent: []string{"ONLY_V1"}},
		{name: "user value overrides an image default", user: []string{"VERSION=pinned"}, wantSpec: []string{"VERSION=pinned"},
			wantEnv: []string{"VERSION=pinned", "ONLY_V2=1"}},
		{name: "user keys keep their order", user: []string{"B=2", "A=1", "EMPTY="}, wantSpec: []string{"B=2", "A=1", "EMPTY="},
			wantEnv: []string{"B=2", "A=1", "EMPTY=", "VERSION=v2"}},
		{name: "user value equal to the old default follows the new image", user: []string{"VERSION=v1"}, wantSpec: nil,
			wantEnv: []string{"VERSION=v2"}},
		{name: "user overrides PATH", user: []string{"PATH=/opt/bin"}, wantSpec: []string{"PATH=/opt/bin"},
			wantEnv: []string{"PATH=/opt/bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, got := cloneToV2(t, createOld(container.Config{Env: tt.user}, container.HostConfig{}))
			if !slices.Equal(spec.Config.Env, tt.wantSpec) {
				t.Errorf("spec Env = %q, want %q", spec.Config.Env, tt.wantSpec)
			}
			for _, e := range tt.wantEnv {
				if !slices.Contains(got.Env, e) {
					t.Errorf("new container env %q lacks %q", got.Env, e)
				}
			}
			for _, k := range tt.absent {
				if _, ok := envMap(got.Env)[k]; ok {
					t.Errorf("new container env %q has %s, which only the old image sets", got.Env, k)
				}
			}
		})
	}
}

func TestCloneConfigCommand(t *testing.T) {
	tests := []struct {
		name                   string
		userEP, userCmd        strslice.StrSlice
		wantSpecEP, wantSpecCm strslice.StrSlice
		wantEP, wantCmd        strslice.StrSlice
	}{
		{name: "image defaults", wantEP: strslice.StrSlice{"/app-v2"}, wantCmd: strslice.StrSlice{"serve-v2"}},
		{name: "cmd only", userCmd: strslice.StrSlice{"migrate"},
			wantSpecCm: strslice.StrSlice{"migrate"},
			wantEP:     strslice.StrSlice{"/app-v2"}, wantCmd: strslice.StrSlice{"migrate"}},
		{name: "cmd equal to the old default follows the new image", userCmd: strslice.StrSlice{"serve-v1"},
			wantEP: strslice.StrSlice{"/app-v2"}, wantCmd: strslice.StrSlice{"serve-v2"}},
		{name: "entrypoint only", userEP: strslice.StrSlice{"/bin/tool"},
			wantSpecEP: strslice.StrSlice{"/bin/tool"},
			wantEP:     strslice.StrSlice{"/bin/tool"}},
		{name: "entrypoint and cmd", userEP: strslice.StrSlice{"/bin/sh"}, userCmd: strslice.StrSlice{"-c", "serve-v1"},
			wantSpecEP: strslice.StrSlice{"/bin/sh"}, wantSpecCm: strslice.StrSlice{"-c", "serve-v1"},
			wantEP: strslice.StrSlice{"/bin/sh"}, wantCmd: strslice.StrSlice{"-c", "serve-v1"}},
		{name: "entrypoint cleared", userEP: strslice.StrSlice{""}, userCmd: strslice.StrSlice{"/demoapp"},
			wantSpecEP: strslice.StrSlice{""}, wantSpecCm: strslice.StrSlice{"/demoapp"},
			wantEP: nil, wantCmd: strslice.StrSlice{"/demoapp"}},
		{name: "entrypoint set to the image's without cmd", userEP: strslice.StrSlice{"/app-v1"},
			wantSpecEP: strslice.StrSlice{"/app-v1"},
			wantEP:     strslice.StrSlice{"/app-v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, got := cloneToV2(t, createOld(container.Config{Entrypoint: tt.userEP, Cmd: tt.userCmd}, container.HostConfig{}))
			if !reflect.DeepEqual(spec.Config.Entrypoint, tt.wantSpecEP) || !reflect.DeepEqual(spec.Config.Cmd, tt.wantSpecCm) {
				t.Errorf("spec Entrypoint %q Cmd %q, want %q %q", spec.Config.Entrypoint, spec.Config.Cmd, tt.wantSpecEP, tt.wantSpecCm)
			}
			if !slices.Equal(got.Entrypoint, tt.wantEP) || !slices.Equal(got.Cmd, tt.wantCmd) {
				t.Errorf("new container Entrypoint %q Cmd %q, want %q %q", got.Entrypoint, got.Cmd, tt.wantEP, tt.wantCmd)
			}
		})
	}
}

func TestCloneConfigImageDefaultedStrings(t *testing.T) {
	tests := []struct {
		name     string
		user     container.Config
		field    func(*container.Config) string
		wantSpec string
		want     string
	}{
		{"workdir default", container.Config{}, func(c *container.Config) string { return c.WorkingDir }, "", "/srv/v2"},
		{"workdir set", container.Config{WorkingDir: "/work"}, func(c *container.Config) string { return c.WorkingDir }, "/work", "/work"},
		{"user default", container.Config{}, func(c *container.Config) string { return c.User }, "", "app-v2"},
		{"user set", container.Config{User: "1000:1000"}, func(c *container.Config) string { return c.User }, "1000:1000", "1000:1000"},
		{"stop signal default", container.Config{}, func(c *container.Config) string { return c.StopSignal }, "", "SIGQUIT"},
		{"stop signal set", container.Config{StopSignal: "SIGINT"}, func(c *container.Config) string { return c.StopSignal }, "SIGINT", "SIGINT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, got := cloneToV2(t, createOld(tt.user, container.HostConfig{}))
			if s := tt.field(spec.Config); s != tt.wantSpec {
				t.Errorf("spec has %q, want %q", s, tt.wantSpec)
			}
			if s := tt.field(&got); s != tt.want {
				t.Errorf("new container has %q, want %q", s, tt.want)
			}
		})
	}
}

func TestCloneConfigHealthcheck(t *testing.T) {
	v2 := testImage("v2").Config.Healthcheck
	tests := []struct {
		name     string
		user     *container.HealthConfig
		wantSpec *container.HealthConfig
		want     *container.HealthConfig
	}{
		{name: "image default follows the new image", want: v2},
		{name: "custom command keeps the new image's timings",
			user:     &container.HealthConfig{Test: []string{"CMD-SHELL", "check"}},
			wantSpec: &container.HealthConfig{Test: []string{"CMD-SHELL", "check"}},
			want:     &container.HealthConfig{Test: []string{"CMD-SHELL", "check"}, Interval: v2.Interval, Retries: v2.Retries}},
		{name: "custom command and timings",
			user:     &container.HealthConfig{Test: []string{"CMD", "check"}, Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: time.Minute, Retries: 9},
			wantSpec: &container.HealthConfig{Test: []string{"CMD", "check"}, Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: time.Minute, Retries: 9},
			want:     &container.HealthConfig{Test: []string{"CMD", "check"}, Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: time.Minute, Retries: 9}},
		{name: "disabled",
			user:     &container.HealthConfig{Test: []string{"NONE"}},
			wantSpec: &container.HealthConfig{Test: []string{"NONE"}},
			want:     &container.HealthConfig{Test: []string{"NONE"}, Interval: v2.Interval, Retries: v2.Retries}},
		{name: "interval only keeps the new image's command",
			user:     &container.HealthConfig{Interval: time.Minute},
			wantSpec: &container.HealthConfig{Interval: time.Minute},
			want:     &container.HealthConfig{Test: v2.Test, Interval: time.Minute, Retries: v2.Retries}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, got := cloneToV2(t, createOld(container.Config{Healthcheck: tt.user}, container.HostConfig{}))
			if !reflect.DeepEqual(spec.Config.Healthcheck, tt.wantSpec) {
				t.Errorf("spec Healthcheck = %+v, want %+v", spec.Config.Healthcheck, tt.wantSpec)
			}
			if !reflect.DeepEqual(got.Healthcheck, tt.want) {
				t.Errorf("new container Healthcheck = %+v, want %+v", got.Healthcheck, tt.want)
			}
		})
	}
}

func TestCloneConfigLabels(t *testing.T) {
	old := createOld(container.Config{Labels: map[string]string{
		"app":                        "shop",
		"org.example.shared":         "mine", // overrides an image label
		"baton.role":                 "old",
		"baton.test":                 "1",
		"com.docker.compose.service": "web",
		"com.docker.compose.project": "shop",         // equal to the image's: the image author's, not copied
		"baton.nginx-reload":         "touch /tmp/x", // a command is never carried in a label
		"baton.http-probe":           "/healthz",
	}}, container.HostConfig{})
	spec, got := cloneToV2(t, old)
	want := map[string]string{
		"app":                        "shop",
		"baton.test":                 "1", // the user's; only deploy identity labels are dropped
		"org.example.shared":         "mine",
		"com.docker.compose.service": "web",
		"baton.http-probe":           "/healthz",
	}
	if !reflect.DeepEqual(spec.Config.Labels, want) {
		t.Errorf("spec Labels = %v, want %v", spec.Config.Labels, want)
	}
	if v := got.Labels["com.docker.compose.project"]; v != "shop" {
		t.Errorf("new container label com.docker.compose.project = %q, want the new image's shop", v)
	}
	if v := got.Labels["org.example.version"]; v != "v2" {
		t.Errorf("new container label org.example.version = %q, want the new image's v2", v)
	}

	// No user label at all still yields a map the caller can add to.
	spec, _ = cloneToV2(t, createOld(container.Config{}, container.HostConfig{}))
	if spec.Config.Labels == nil || len(spec.Config.Labels) != 0 {
		t.Errorf("spec Labels = %v, want an empty non-nil map (the image's labels come from the image)", spec.Config.Labels)
	}
}

func TestCloneConfigExposedPorts(t *testing.T) {
	// -p 127.0.0.1:7000:7000 --expose 9000/udp: the CLI exposes bound ports too.
	old := createOld(container.Config{ExposedPorts: nat.PortSet{"9000/udp": {}, "7000/tcp": {}}},
		container.HostConfig{PortBindings: nat.PortMap{"7000/tcp": {{HostIP: "127.0.0.1", HostPort: "7000"}}}})
	// An API client may bind a port without exposing it.
	old.HostConfig.PortBindings["7001/tcp"] = []nat.PortBinding{{}}
	spec, _ := cloneToV2(t, old)
	want := nat.PortSet{"9000/udp": {}, "7000/tcp": {}, "7001/tcp": {}}
	if !reflect.DeepEqual(spec.Config.ExposedPorts, want) {
		t.Errorf("spec ExposedPorts = %v, want %v (not the image's 8080/tcp)", spec.Config.ExposedPorts, want)
	}
}

func TestCloneConfigVolumes(t *testing.T) {
	spec, got := cloneToV2(t, createOld(container.Config{Volumes: map[string]struct{}{"/cache": {}}}, container.HostConfig{}))
	if want := map[string]struct{}{"/cache": {}}; !reflect.DeepEqual(spec.Config.Volumes, want) {
		t.Errorf("spec Volumes = %v, want %v", spec.Config.Volumes, want)
	}
	if want := map[string]struct{}{"/cache": {}, "/data-v2": {}}; !reflect.DeepEqual(got.Volumes, want) {
		t.Errorf("new container Volumes = %v, want %v", got.Volumes, want)
	}
}

func TestCloneConfigHostname(t *testing.T) {
	tests := []struct {
		name, hostname, domain string
		want                   string
	}{
		{name: "default is the old short ID", want: ""},
		{name: "set", hostname: "web-host", domain: "example.org", want: "web-host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := createOld(container.Config{Hostname: tt.hostname, Domainname: tt.domain}, container.HostConfig{})
			spec, _ := cloneToV2(t, old)
			if spec.Config.Hostname != tt.want || spec.Config.Domainname != tt.domain {
				t.Errorf("spec Hostname %q Domainname %q, want %q %q (old hostname %q)",
					spec.Config.Hostname, spec.Config.Domainname, tt.want, tt.domain, old.Config.Hostname)
			}
		})
	}
}

func TestCloneConfigCopiesStreamsAndStopTimeout(t *testing.T) {
	timeout := 42
	user := container.Config{
		Tty: true, OpenStdin: true, StdinOnce: true,
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
		NetworkDisabled: true, StopTimeout: &timeout,
	}
	old := createOld(user, container.HostConfig{})
	spec, _ := cloneToV2(t, old)
	c := spec.Config
	if !c.Tty || !c.OpenStdin || !c.StdinOnce || !c.AttachStdin || !c.AttachStdout || !c.AttachStderr || !c.NetworkDisabled {
		t.Errorf("stream/network flags lost: %+v", c)
	}
	if c.StopTimeout == nil || *c.StopTimeout != 42 {
		t.Fatalf("StopTimeout = %v, want 42", c.StopTimeout)
	}
	if c.StopTimeout == old.Config.StopTimeout {
		t.Error("StopTimeout shares the old container's pointer")
	}
}

func TestCloneConfigMacAddress(t *testing.T) {
	old := createOld(container.Config{MacAddress: "02:42:ac:11:00:99"}, container.HostConfig{NetworkMode: "shop"}) //nolint:staticcheck // SA1019: API 1.41 form
	// At runtime the endpoint reports the MAC, chosen or generated.
	old.NetworkSettings.Networks["shop"].MacAddress = "02:42:ac:11:00:99"
	old.NetworkSettings.Networks["other"] = &network.EndpointSettings{MacAddress: "02:42:ac:11:00:05"}
	spec, _ := cloneToV2(t, old)
	if spec.Config.MacAddress != "" { //nolint:staticcheck // SA1019
		t.Errorf("Config.MacAddress = %q, want it not copied", spec.Config.MacAddress) //nolint:staticcheck // SA1019
	}
	for _, n := range spec.Networks {
		if n.Endpoint.MacAddress != "" {
			t.Errorf("network %s: endpoint MacAddress %q copied", n.Name, n.Endpoint.MacAddress)
		}
		if want := n.Name == "shop"; n.Exclusive != want {
			t.Errorf("network %s: Exclusive = %v, want %v", n.Name, n.Exclusive, want)
		}
	}
	if want := []string{"MAC address 02:42:ac:11:00:99 on network shop"}; !slices.Equal(spec.Exclusive, want) {
		t.Errorf("Exclusive = %q, want %q", spec.Exclusive, want)
	}
	if !slices.ContainsFunc(spec.Diff, func(d FieldDiff) bool { return d.Field == "mac address" && d.Old == "02:42:ac:11:00:99" }) {
		t.Errorf("Diff %q does not list the MAC address", spec.Diff)
	}

	// A generated MAC alone is nothing to hand over.
	old = createOld(container.Config{}, container.HostConfig{NetworkMode: "shop"})
	old.NetworkSettings.Networks["shop"].MacAddress = "02:42:ac:11:00:02"
	spec, _ = cloneToV2(t, old)
	if len(spec.Exclusive) != 0 || spec.Networks[0].Exclusive || spec.Networks[0].Endpoint.MacAddress != "" {
		t.Errorf("generated MAC: Exclusive %q, attachment %+v", spec.Exclusive, spec.Networks[0])
	}
}

func TestCloneConfigVolumeMounts(t *testing.T) {
	hc := container.HostConfig{
		Binds: []string{"named:/named", "/srv/host:/host:ro"},
		Mounts: []mount.Mount{
			{Type: mount.TypeVolume, Target: "/mnt-anon"}, // --mount type=volume,target=/mnt-anon
			{Type: mount.TypeVolume, Source: "vol2", Target: "/v2", ReadOnly: true},
			{Type: mount.TypeBind, Source: "/etc/app", Target: "/etc/app"},
		},
		Tmpfs: map[string]string{"/run": ""},
	}
	old := createOld(container.Config{Volumes: map[string]struct{}{"/cache": {}}}, hc)
	old.Mounts = []container.MountPoint{
		{Type: mount.TypeVolume, Name: "anon-image", Destination: "/data-v1", RW: true},
		{Type: mount.TypeVolume, Name: "anon-cache", Destination: "/cache", RW: false},
		{Type: mount.TypeVolume, Name: "named", Destination: "/named", RW: true},
		{Type: mount.TypeBind, Source: "/srv/host", Destination: "/host"},
		{Type: mount.TypeVolume, Name: "anon-mount", Destination: "/mnt-anon", RW: true},
		{Type: mount.TypeVolume, Name: "vol2", Destination: "/v2"},
		{Type: mount.TypeBind, Source: "/etc/app", Destination: "/etc/app", RW: true},
	}
	spec, _ := cloneToV2(t, old)
	want := []mount.Mount{
		{Type: mount.TypeVolume, Source: "anon-mount", Target: "/mnt-anon"},
		{Type: mount.TypeVolume, Source: "vol2", Target: "/v2", ReadOnly: true},
		{Type: mount.TypeBind, Source: "/etc/app", Target: "/etc/app"},
		{Type: mount.TypeVolume, Source: "anon-cache", Target: "/cache", ReadOnly: true},
		{Type: mount.TypeVolume, Source: "anon-image", Target: "/data-v1"},
	}
	if !reflect.DeepEqual(spec.HostConfig.Mounts, want) {
		t.Errorf("Mounts =\n%+v\nwant\n%+v", spec.HostConfig.Mounts, want)
	}
	if !slices.Equal(spec.HostConfig.Binds, hc.Binds) {
		t.Errorf("Binds = %q, want %q", spec.HostConfig.Binds, hc.Binds)
	}
	if old.HostConfig.Mounts[0].Source != "" {
		t.Error("the old container's HostConfig.Mounts was modified")
	}
}

func TestCloneConfigRefusedNetworkModes(t *testing.T) {
	tests := []struct {
		mode    container.NetworkMode
		wantMsg string
	}{
		{"host", "container web uses network mode host: a second copy cannot listen on the same ports, so it cannot be replaced without downtime"},
		{"container:db", "container web uses network mode container:db: it shares the network stack of container db"},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			_, err := CloneConfig(createOld(container.Config{}, container.HostConfig{NetworkMode: tt.mode}), testImage("v1"), testImage("v2"), "shop:v2")
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to start with %q", err, tt.wantMsg)
			}
		})
	}

	t.Run("none", func(t *testing.T) {
		spec, _ := cloneToV2(t, createOld(container.Config{}, container.HostConfig{NetworkMode: "none"}))
		if len(spec.Networks) != 0 || spec.HostConfig.NetworkMode != "none" {
			t.Errorf("network mode none: Networks %+v, NetworkMode %q", spec.Networks, spec.HostConfig.NetworkMode)
		}
	})
}

func TestCloneConfigPortBindings(t *testing.T) {
	tests := []struct {
		name          string
		bindings      nat.PortMap
		publishAll    bool
		wantExclusive []string
	}{
		{name: "fixed ports are exclusive", bindings: nat.PortMap{
			"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "18080"}},
			"53/udp":   {{HostPort: "5353"}},
			"8443/tcp": {{HostIP: "::1", HostPort: "8443"}, {HostIP: "0.0.0.0", HostPort: "0"}},
		}, wantExclusive: []string{"host port *:5353/udp", "host port 127.0.0.1:18080/tcp", "host port [::1]:8443/tcp"}},
		{name: "random ports are not", bindings: nat.PortMap{
			"9000/tcp": {{}},
			"9001/tcp": {{HostIP: "127.0.0.1", HostPort: "0"}},
		}},
		{name: "publish all is not", publishAll: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := createOld(container.Config{}, container.HostConfig{PortBindings: tt.bindings, PublishAllPorts: tt.publishAll})
			spec, _ := cloneToV2(t, old)
			if !slices.Equal(spec.Exclusive, tt.wantExclusive) {
				t.Errorf("Exclusive = %q, want %q", spec.Exclusive, tt.wantExclusive)
			}
			if !reflect.DeepEqual(spec.HostConfig.PortBindings, tt.bindings) || spec.HostConfig.PublishAllPorts != tt.publishAll {
				t.Errorf("PortBindings %v PublishAll %v, want %v %v", spec.HostConfig.PortBindings, spec.HostConfig.PublishAllPorts, tt.bindings, tt.publishAll)
			}
		})
	}
}

func TestCloneConfigNetworks(t *testing.T) {
	old := createOld(container.Config{Hostname: "web-host"}, container.HostConfig{NetworkMode: "shop"})
	runtime := network.EndpointSettings{
		EndpointID: "ep", Gateway: "10.5.0.1", IPAddress: "10.5.0.7", IPPrefixLen: 24,
		MacAddress: "02:42:0a:05:00:07", IPv6Gateway: "fd00::1", GlobalIPv6Address: "fd00::7", GlobalIPv6PrefixLen: 64,
		DNSNames: []string{"web", "0123456789ab"},
	}
	withRuntime := func(ep network.EndpointSettings) *network.EndpointSettings {
		ep.EndpointID, ep.Gateway, ep.IPAddress, ep.IPPrefixLen = runtime.EndpointID, runtime.Gateway, runtime.IPAddress, runtime.IPPrefixLen
		ep.MacAddress, ep.IPv6Gateway, ep.GlobalIPv6Address, ep.GlobalIPv6PrefixLen = runtime.MacAddress, runtime.IPv6Gateway, runtime.GlobalIPv6Address, runtime.GlobalIPv6PrefixLen
		ep.DNSNames = runtime.DNSNames
		return &ep
	}
	old.NetworkSettings.Networks = map[string]*network.EndpointSettings{
		"shop": withRuntime(network.EndpointSettings{
			NetworkID:  "shopnetid",
			Aliases:    []string{"store", testOldID[:12], "web", "web-host", "store"},
			Links:      []string{"db:database"},
			IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.5.0.7"},
			DriverOpts: map[string]string{"com.example.opt": "1"},
		}),
		"backend": withRuntime(network.EndpointSettings{
			NetworkID:  "backendid",
			Aliases:    []string{"api"},
			IPAMConfig: &network.EndpointIPAMConfig{IPv6Address: "fd00::7"},
		}),
		"admin":  withRuntime(network.EndpointSettings{NetworkID: "adminid", IPAMConfig: &network.EndpointIPAMConfig{}}),
		"bridge": withRuntime(network.EndpointSettings{NetworkID: "bridgeid", Aliases: []string{"legacy"}}),
	}
	spec, _ := cloneToV2(t, old)

	want := []NetworkAttachment{
		{Name: "shop", Exclusive: true, Endpoint: &network.EndpointSettings{
			NetworkID: "shopnetid", Aliases: []string{"store"}, Links: []string{"db:database"},
			IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.5.0.7", LinkLocalIPs: []string{}},
			DriverOpts: map[string]string{"com.example.opt": "1"},
		}},
		{Name: "admin", Endpoint: &network.EndpointSettings{NetworkID: "adminid"}},
		{Name: "backend", Exclusive: true, Endpoint: &network.EndpointSettings{
			NetworkID: "backendid", Aliases: []string{"api"},
			IPAMConfig: &network.EndpointIPAMConfig{IPv6Address: "fd00::7", LinkLocalIPs: []string{}},
		}},
		{Name: "bridge", Endpoint: &network.EndpointSettings{NetworkID: "bridgeid"}},
	}
	if !reflect.DeepEqual(spec.Networks, want) {
		for i := range spec.Networks {
			t.Logf("got %d: %s exclusive=%v %+v", i, spec.Networks[i].Name, spec.Networks[i].Exclusive, *spec.Networks[i].Endpoint)
		}
		t.Errorf("Networks differ from the want listed above it:\n%+v", want)
	}
	wantExclusive := []string{"static IP 10.5.0.7 on network shop", "static IP fd00::7 on network backend"}
	if !slices.Equal(spec.Exclusive, wantExclusive) {
		t.Errorf("Exclusive = %q, want %q", spec.Exclusive, wantExclusive)
	}
}

func TestCloneConfigDefaultNetworkIsPrimary(t *testing.T) {
	old := createOld(container.Config{}, container.HostConfig{})
	old.NetworkSettings.Networks["a-net"] = &network.EndpointSettings{}
	spec, _ := cloneToV2(t, old)
	var names []string
	for _, n := range spec.Networks {
		names = append(names, n.Name)
	}
	if want := []string{"bridge", "a-net"}; !slices.Equal(names, want) {
		t.Errorf("network order %q, want %q", names, want)
	}
}

// TestCloneConfigHostConfigCopied sets one HostConfig field at a time, the
// way the CLI flag in the case name does, and checks the new HostConfig
// carries it unchanged.
func TestCloneConfigHostConfigCopied(t *testing.T) {
	yes, no := true, false
	pids, swappiness := int64(100), int64(10)
	tests := []struct {
		flag string
		set  func(*container.HostConfig)
	}{
		{"--restart", func(h *container.HostConfig) {
			h.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 3}
		}},
		{"--memory", func(h *container.HostConfig) { h.Memory, h.MemorySwap = 64<<20, 128<<20 }},
		{"--memory-reservation", func(h *container.HostConfig) { h.MemoryReservation = 32 << 20 }},
		{"--memory-swappiness", func(h *container.HostConfig) { h.MemorySwappiness = &swappiness }},
		{"--oom-kill-disable", func(h *container.HostConfig) { h.OomKillDisable = &yes }},
		{"--cpus", func(h *container.HostConfig) { h.NanoCPUs = 1_500_000_000 }},
		{"--cpu-shares", func(h *container.HostConfig) { h.CPUShares = 512 }},
		{"--cpu-quota --cpu-period", func(h *container.HostConfig) { h.CPUQuota, h.CPUPeriod = 50000, 100000 }},
		{"--cpuset-cpus", func(h *container.HostConfig) { h.CpusetCpus, h.CpusetMems = "0-1", "0" }},
		{"--pids-limit", func(h *container.HostConfig) { h.PidsLimit = &pids }},
		{"--blkio-weight", func(h *container.HostConfig) {
			h.BlkioWeight = 300
			h.BlkioDeviceReadBps = []*blkiodev.ThrottleDevice{{Path: "/dev/sda", Rate: 1 << 20}}
		}},
		{"--cgroup-parent", func(h *container.HostConfig) { h.CgroupParent = "/batch" }},
		{"--cap-add", func(h *container.HostConfig) { h.CapAdd = strslice.StrSlice{"NET_ADMIN"} }},
		{"--cap-drop", func(h *container.HostConfig) { h.CapDrop = strslice.StrSlice{"ALL"} }},
		{"--security-opt", func(h *container.HostConfig) { h.SecurityOpt = []string{"no-new-privileges", "apparmor=unconfined"} }},
		{"--privileged", func(h *container.HostConfig) { h.Privileged = true }},
		{"--log-driver --log-opt", func(h *container.HostConfig) {
			h.LogConfig = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "1m", "max-file": "2"}}
		}},
		{"--add-host", func(h *container.HostConfig) {
			h.ExtraHosts = []string{"db.local:10.0.0.5", "host.docker.internal:host-gateway"}
		}},
		{"--tmpfs", func(h *container.HostConfig) { h.Tmpfs = map[string]string{"/run": "rw,size=64m"} }},
		{"--sysctl", func(h *container.HostConfig) { h.Sysctls = map[string]string{"net.core.somaxconn": "1024"} }},
		{"--ulimit", func(h *container.HostConfig) {
			h.Ulimits = []*units.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}
		}},
		{"--init", func(h *container.HostConfig) { h.Init = &yes }},
		{"--init=false", func(h *container.HostConfig) { h.Init = &no }},
		{"--read-only", func(h *container.HostConfig) { h.ReadonlyRootfs = true }},
		{"--shm-size", func(h *container.HostConfig) { h.ShmSize = 256 << 20 }},
		{"--device", func(h *container.HostConfig) {
			h.Devices = []container.DeviceMapping{{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"}}
		}},
		{"--device-cgroup-rule", func(h *container.HostConfig) { h.DeviceCgroupRules = []string{"c 1:3 mr"} }},
		{"--gpus", func(h *container.HostConfig) {
			h.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", Count: -1, Capabilities: [][]string{{"gpu"}}}}
		}},
		{"--dns", func(h *container.HostConfig) { h.DNS = []string{"10.0.0.53"} }},
		{"--dns-search", func(h *container.HostConfig) { h.DNSSearch = []string{"example.org"} }},
		{"--dns-option", func(h *container.HostConfig) { h.DNSOptions = []string{"ndots:2"} }},
		{"--group-add", func(h *container.HostConfig) { h.GroupAdd = []string{"audio"} }},
		{"--ipc shareable", func(h *container.HostConfig) { h.IpcMode = "shareable" }},
		{"--pid", func(h *container.HostConfig) { h.PidMode = "container:sidecar" }},
		{"--uts", func(h *container.HostConfig) { h.UTSMode = "host" }},
		{"--userns", func(h *container.HostConfig) { h.UsernsMode = "host" }},
		{"--cgroupns", func(h *container.HostConfig) { h.CgroupnsMode = "private" }},
		{"--oom-score-adj", func(h *container.HostConfig) { h.OomScoreAdj = 500 }},
		{"--runtime", func(h *container.HostConfig) { h.Runtime = "runc" }},
		{"--security-opt systempaths=unconfined", func(h *container.HostConfig) {
			h.MaskedPaths, h.ReadonlyPaths = []string{}, []string{}
		}},
		{"daemon default masked paths", func(h *container.HostConfig) {
			h.MaskedPaths, h.ReadonlyPaths = []string{"/proc/kcore"}, []string{"/proc/sys"}
		}},
		{"--annotation", func(h *container.HostConfig) { h.Annotations = map[string]string{"com.example.a": "b"} }},
		{"--rm", func(h *container.HostConfig) { h.AutoRemove = true }},
		{"--publish-all", func(h *container.HostConfig) { h.PublishAllPorts = true }},
		{"--link", func(h *container.HostConfig) { h.Links = []string{"/db:/web/db"} }},
		{"--volumes-from", func(h *container.HostConfig) { h.VolumesFrom = []string{"data:ro"} }},
		{"-v", func(h *container.HostConfig) { h.Binds = []string{"named:/named", "/srv:/srv:ro"} }},
		{"--volume-driver", func(h *container.HostConfig) { h.VolumeDriver = "local" }},
		{"--storage-opt", func(h *container.HostConfig) { h.StorageOpt = map[string]string{"size": "1G"} }},
		{"--mount", func(h *container.HostConfig) {
			h.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/etc/app", Target: "/etc/app", ReadOnly: true,
				BindOptions: &mount.BindOptions{Propagation: mount.PropagationRSlave}}}
		}},
		{"--network", func(h *container.HostConfig) { h.NetworkMode = "shop" }},
	}
	baseline := createOld(container.Config{}, container.HostConfig{}).HostConfig
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			var hc container.HostConfig
			tt.set(&hc)
			old := createOld(container.Config{}, hc)
			if reflect.DeepEqual(old.HostConfig, baseline) {
				t.Fatal("the case sets nothing")
			}
			want, err := deepCopy(old.HostConfig)
			if err != nil {
				t.Fatal(err)
			}
			spec, _ := cloneToV2(t, old)
			if !reflect.DeepEqual(spec.HostConfig, want) {
				got, _ := json.Marshal(spec.HostConfig)
				wantJSON, _ := json.Marshal(want)
				t.Errorf("HostConfig =\n%s\nwant\n%s", got, wantJSON)
			}
		})
	}
}

func TestCloneConfigClearsContainerIDFile(t *testing.T) {
	spec, _ := cloneToV2(t, createOld(container.Config{}, container.HostConfig{ContainerIDFile: "/tmp/web.cid", Resources: container.Resources{Memory: 1 << 30}}))
	if spec.HostConfig.ContainerIDFile != "" {
		t.Errorf("ContainerIDFile = %q, want it cleared", spec.HostConfig.ContainerIDFile)
	}
	if spec.HostConfig.Memory != 1<<30 {
		t.Errorf("Memory = %d, want the rest of the HostConfig kept", spec.HostConfig.Memory)
	}
}

func TestCloneConfigDiff(t *testing.T) {
	old := createOld(container.Config{
		Env:    []string{"FOO=bar"},
		Labels: map[string]string{"baton.role": "old"},
	}, container.HostConfig{})
	spec, _ := cloneToV2(t, old)
	want := []FieldDiff{
		{"image", "shop:v1 (111111111111)", "shop:v2 (222222222222)"},
		{"entrypoint", `["/app-v1"]`, `["/app-v2"]`},
		{"cmd", `["serve-v1"]`, `["serve-v2"]`},
		{"env ONLY_V1", "1", "(unset)"},
		{"env ONLY_V2", "(unset)", "1"},
		{"env VERSION", "v1", "v2"},
		{"label org.example.version", "v1", "v2"},
		{"workdir", "/srv/v1", "/srv/v2"},
		{"user", "app-v1", "app-v2"},
		{"healthcheck", `["CMD","/app-v1","-probe"] (interval 5s, retries 3)`, `["CMD","/app-v2","-probe"] (interval 5s, retries 3)`},
		{"volumes", "/data-v1", "/data-v2"},
	}
	if !reflect.DeepEqual(spec.Diff, want) {
		t.Errorf("Diff =\n%q\nwant\n%q", spec.Diff, want)
	}

	// What the user set does not change, so it is not listed.
	old = createOld(container.Config{
		Env: []string{"VERSION=pinned"}, Cmd: strslice.StrSlice{"run"}, WorkingDir: "/w", User: "u",
		Healthcheck: &container.HealthConfig{Test: []string{"NONE"}, Interval: time.Second, Retries: 1},
	}, container.HostConfig{})
	spec, _ = cloneToV2(t, old)
	for _, d := range spec.Diff {
		switch d.Field {
		case "env VERSION", "cmd", "workdir", "user", "healthcheck":
			t.Errorf("Diff lists %+v, which the user set", d)
		}
	}
}

func TestCloneConfigDoesNotMutateInputs(t *testing.T) {
	timeout := 5
	old := createOld(container.Config{
		Env: []string{"A=1"}, Cmd: strslice.StrSlice{"run"}, Entrypoint: strslice.StrSlice{"/bin/sh"},
		Labels: map[string]string{"app": "shop"}, Volumes: map[string]struct{}{"/cache": {}},
		ExposedPorts: nat.PortSet{"9000/tcp": {}}, StopTimeout: &timeout,
		Healthcheck: &container.HealthConfig{Test: []string{"CMD", "check"}},
	}, container.HostConfig{
		NetworkMode:  "shop",
		Binds:        []string{"named:/named"},
		Mounts:       []mount.Mount{{Type: mount.TypeVolume, Target: "/m"}},
		PortBindings: nat.PortMap{"9000/tcp": {{HostPort: "9000"}}},
		Tmpfs:        map[string]string{"/run": ""},
		CapAdd:       strslice.StrSlice{"NET_ADMIN"},
	})
	old.Mounts = []container.MountPoint{
		{Type: mount.TypeVolume, Name: "anon", Destination: "/m", RW: true},
		{Type: mount.TypeVolume, Name: "anon2", Destination: "/cache", RW: true},
	}
	old.NetworkSettings.Networks["shop"] = &network.EndpointSettings{
		Aliases: []string{"store"}, Links: []string{"db:db"}, DriverOpts: map[string]string{"k": "v"},
		IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.0.0.2", LinkLocalIPs: []string{"169.254.0.2"}},
	}
	oldImage, newImage := testImage("v1"), testImage("v2")
	snapshot := func() string {
		b, err := json.Marshal([]any{old, oldImage, newImage})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := snapshot()
	spec, err := CloneConfig(old, oldImage, newImage, "shop:v2")
	if err != nil {
		t.Fatal(err)
	}
	if snapshot() != before {
		t.Fatal("CloneConfig modified its inputs")
	}

	// Writing through everything the spec holds must not reach the inputs.
	c, h := spec.Config, spec.HostConfig
	c.Env[0], c.Cmd[0], c.Entrypoint[0], c.Healthcheck.Test[0] = "X=1", "x", "x", "x"
	c.Labels["app"], c.Volumes["/x"], c.ExposedPorts["1/tcp"] = "x", struct{}{}, struct{}{}
	*c.StopTimeout = 99
	h.Binds[0], h.Mounts[0].Source, h.Tmpfs["/run"], h.CapAdd[0] = "x:/x", "x", "x", "x"
	h.PortBindings["9000/tcp"][0].HostPort = "1"
	ep := spec.Networks[0].Endpoint
	ep.Aliases[0], ep.Links[0], ep.DriverOpts["k"] = "x", "x", "x"
	ep.IPAMConfig.IPv4Address, ep.IPAMConfig.LinkLocalIPs[0] = "x", "x"
	if snapshot() != before {
		t.Fatal("the CloneSpec shares memory with the inputs")
	}
}

func TestCloneConfigIncompleteInspect(t *testing.T) {
	tests := map[string]container.InspectResponse{
		"no base":        {Config: &container.Config{}},
		"no config":      {ContainerJSONBase: &container.ContainerJSONBase{Name: "/web", HostConfig: &container.HostConfig{}}},
		"no host config": {ContainerJSONBase: &container.ContainerJSONBase{Name: "/web"}, Config: &container.Config{}},
	}
	for name, old := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := CloneConfig(old, testImage("v1"), testImage("v2"), "shop:v2"); err == nil {
				t.Error("CloneConfig accepted incomplete inspect data")
			}
		})
	}
}

func TestCloneConfigImageWithoutConfig(t *testing.T) {
	old := createOld(container.Config{Env: []string{"A=1"}}, container.HostConfig{})
	spec, err := CloneConfig(old, image.InspectResponse{}, image.InspectResponse{}, "shop:v2")
	if err != nil {
		t.Fatal(err)
	}
	// Against an empty image every value is the user's.
	if !slices.Contains(spec.Config.Env, "VERSION=v1") || !slices.Contains(spec.Config.Env, "A=1") {
		t.Errorf("Env = %q, want all of the old container's", spec.Config.Env)
	}
}
