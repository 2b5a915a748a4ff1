package dockerctl

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/go-connections/nat"
)

// The two images differ in every default a container inherits, so each
// check can tell whether a value came from the user, the old image or the
// new one. They are imported (one layer holding the demoapp binary, with
// these Dockerfile instructions applied) rather than built: the legacy
// builder commits a layer per instruction, some ten seconds per image here.
// An import cannot set STOPSIGNAL; the unit tests cover the image's stop
// signal.
var (
	cloneImageV1 = cloneImage{bin: "demoapp", dirs: []string{"srv/", "srv/v1/"}, changes: []string{
		"ENV VERSION=v1 SHARED=same ONLY_V1=1",
		"LABEL org.example.version=v1 org.example.shared=same baton.test=1",
		"WORKDIR /srv/v1",
		"EXPOSE 8080",
		"VOLUME /data-v1",
		`HEALTHCHECK --interval=3s --timeout=2s --retries=2 CMD ["/demoapp", "-probe", "http://127.0.0.1:8080/healthz"]`,
		`ENTRYPOINT ["/demoapp"]`,
		`CMD ["v1"]`,
	}}
	cloneImageV2 = cloneImage{bin: "bin/demoapp", dirs: []string{"bin/", "srv/", "srv/v2/"}, changes: []string{
		"ENV VERSION=v2 SHARED=same ONLY_V2=1",
		"LABEL org.example.version=v2 org.example.shared=same baton.test=1",
		"WORKDIR /srv/v2",
		"USER 65534",
		"EXPOSE 8080 9090",
		"VOLUME /data-v2",
		`HEALTHCHECK --interval=1s --timeout=3s --retries=3 CMD ["/bin/demoapp", "-probe", "http://127.0.0.1:8080/healthz"]`,
		`ENTRYPOINT ["/bin/demoapp"]`,
		`CMD ["v2"]`,
	}}
)

// cloneImage is a FROM scratch image: the demoapp binary at bin, some
// directories, and Dockerfile instructions for its config.
type cloneImage struct {
	bin     string
	dirs    []string
	changes []string
}

// cloneEnv is what the engine cases share: the client, the two images and
// two user-defined networks, one with a subnet of its own for static IPs.
type cloneEnv struct {
	cli            *Client
	prefix         string
	oldRef, newRef string
	oldImg, newImg image.InspectResponse
	netA, netB     string
	subnetA        string // "10.x.y." for static addresses
}

// cloneOld is the old container as a user's flags define it.
type cloneOld struct {
	cfg *container.Config
	hc  *container.HostConfig
	// nets are the endpoints, the first (by order of netOrder) given at
	// create and the rest connected afterwards, as the CLI does.
	nets     map[string]*network.EndpointSettings
	netOrder []string
}

// cloneRun is one case's outcome: the old container, the spec cloned from
// it, and the new container the engine created from the spec.
type cloneRun struct {
	env  *cloneEnv
	old  container.InspectResponse
	spec *CloneSpec
	new  container.InspectResponse
}

// TestCloneConfigAgainstEngine creates, for each case, an old container from
// image v1 with the fields set the way a user's flags set them, clones it
// onto image v2 and creates the new container from the spec on the real
// engine, then checks the engine's view of the new container.
func TestCloneConfigAgainstEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the Docker Engine")
	}
	env := newCloneEnv(t)

	cases := []struct {
		name  string
		set   func(e *cloneEnv, o *cloneOld)
		check func(t *testing.T, r cloneRun)
	}{
		{
			name: "no flags: defaults from the new image",
			check: func(t *testing.T, r cloneRun) {
				c := r.new.Config
				hasEnv(t, c.Env, "VERSION=v2", "SHARED=same", "ONLY_V2=1")
				lacksEnv(t, c.Env, "ONLY_V1")
				same(t, "Entrypoint", c.Entrypoint, strslice.StrSlice{"/bin/demoapp"})
				same(t, "Cmd", c.Cmd, strslice.StrSlice{"v2"})
				same(t, "WorkingDir", c.WorkingDir, "/srv/v2")
				same(t, "User", c.User, "65534")
				same(t, "label org.example.version", c.Labels["org.example.version"], "v2")
				same(t, "Healthcheck.Test", c.Healthcheck.Test, []string{"CMD", "/bin/demoapp", "-probe", "http://127.0.0.1:8080/healthz"})
				same(t, "Healthcheck.Interval", c.Healthcheck.Interval, time.Second)
				same(t, "Hostname", c.Hostname, shortID(r.new.ID))
				if _, ok := c.ExposedPorts["9090/tcp"]; !ok {
					t.Errorf("ExposedPorts %v lacks the new image's 9090/tcp", c.ExposedPorts)
				}
				if _, ok := c.Volumes["/data-v2"]; !ok {
					t.Errorf("Volumes %v lacks the new image's /data-v2", c.Volumes)
				}
				// The old image's anonymous volume keeps its data.
				sameVolume(t, r, "/data-v1")
				if len(r.spec.Exclusive) != 0 {
					t.Errorf("Exclusive = %q, want none", r.spec.Exclusive)
				}
			},
		},
		{
			name: "-e",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Env = []string{"USER_SET=1", "VERSION=pinned"}
			},
			check: func(t *testing.T, r cloneRun) {
				hasEnv(t, r.new.Config.Env, "USER_SET=1", "VERSION=pinned", "ONLY_V2=1")
				lacksEnv(t, r.new.Config.Env, "ONLY_V1")
			},
		},
		{
			name: "--entrypoint ''",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Entrypoint, o.cfg.Cmd = strslice.StrSlice{""}, strslice.StrSlice{"/demoapp"}
			},
			check: func(t *testing.T, r cloneRun) {
				if len(r.new.Config.Entrypoint) != 0 {
					t.Errorf("Entrypoint = %q, want it cleared", r.new.Config.Entrypoint)
				}
				same(t, "Cmd", r.new.Config.Cmd, strslice.StrSlice{"/demoapp"})
			},
		},
		{
			name: "--entrypoint with args",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Entrypoint, o.cfg.Cmd = strslice.StrSlice{"/usr/bin/env"}, strslice.StrSlice{"-probe", "http://db/healthz"}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "Entrypoint", r.new.Config.Entrypoint, strslice.StrSlice{"/usr/bin/env"})
				same(t, "Cmd", r.new.Config.Cmd, strslice.StrSlice{"-probe", "http://db/healthz"})
			},
		},
		{
			// Equal to the old image's, yet the engine took no Cmd from
			// the image: the user set it, and the new container must not
			// get the new image's Cmd either.
			name: "--entrypoint equal to the image's, without args",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Entrypoint = strslice.StrSlice{"/demoapp"}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "Entrypoint", r.new.Config.Entrypoint, strslice.StrSlice{"/demoapp"})
				if len(r.new.Config.Cmd) != 0 {
					t.Errorf("Cmd = %q, want none (not the new image's)", r.new.Config.Cmd)
				}
			},
		},
		{
			name: "command args",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Cmd = strslice.StrSlice{"custom"}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "Entrypoint", r.new.Config.Entrypoint, strslice.StrSlice{"/bin/demoapp"})
				same(t, "Cmd", r.new.Config.Cmd, strslice.StrSlice{"custom"})
			},
		},
		{
			name: "-w",
			set:  func(_ *cloneEnv, o *cloneOld) { o.cfg.WorkingDir = "/work" },
			check: func(t *testing.T, r cloneRun) {
				same(t, "WorkingDir", r.new.Config.WorkingDir, "/work")
			},
		},
		{
			name: "-u",
			set:  func(_ *cloneEnv, o *cloneOld) { o.cfg.User = "1000:1000" },
			check: func(t *testing.T, r cloneRun) {
				same(t, "User", r.new.Config.User, "1000:1000")
			},
		},
		{
			name: "--label",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Labels["app"] = "shop"
				o.cfg.Labels["org.example.shared"] = "mine"
				o.cfg.Labels["baton.role"] = "old"
			},
			check: func(t *testing.T, r cloneRun) {
				l := r.new.Config.Labels
				same(t, "label app", l["app"], "shop")
				same(t, "label org.example.shared", l["org.example.shared"], "mine")
				same(t, "label org.example.version", l["org.example.version"], "v2")
				if v, ok := l["baton.role"]; ok {
					t.Errorf("label baton.role=%q carried over", v)
				}
			},
		},
		{
			name: "-v named:/named -v /anon --mount type=volume,target=/m",
			set: func(e *cloneEnv, o *cloneOld) {
				o.hc.Binds = []string{e.prefix + "-named:/named"}
				o.cfg.Volumes = map[string]struct{}{"/anon": {}}
				o.hc.Mounts = []mount.Mount{{Type: mount.TypeVolume, Target: "/m"}}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "Binds", r.new.HostConfig.Binds, r.old.HostConfig.Binds)
				for _, dst := range []string{"/named", "/anon", "/m", "/data-v1"} {
					sameVolume(t, r, dst)
				}
			},
		},
		{
			name: "--network --network-alias, network connect --alias",
			set: func(e *cloneEnv, o *cloneOld) {
				o.hc.NetworkMode = container.NetworkMode(e.netA)
				o.nets = map[string]*network.EndpointSettings{
					e.netA: {Aliases: []string{"shop-web"}},
					e.netB: {Aliases: []string{"shop-api"}},
				}
				o.netOrder = []string{e.netA, e.netB}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "NetworkMode", r.new.HostConfig.NetworkMode, container.NetworkMode(r.env.netA))
				nets := r.new.NetworkSettings.Networks
				if len(nets) != 2 || nets[r.env.netA] == nil || nets[r.env.netB] == nil {
					t.Fatalf("new container networks %v, want %s and %s", slices.Collect(maps.Keys(nets)), r.env.netA, r.env.netB)
				}
				// On connect the engine adds the container's short ID.
				own := func(aliases []string) []string {
					return slices.DeleteFunc(slices.Clone(aliases), func(a string) bool { return a == shortID(r.new.ID) })
				}
				same(t, "aliases on "+r.env.netA, own(nets[r.env.netA].Aliases), []string{"shop-web"})
				same(t, "aliases on "+r.env.netB, own(nets[r.env.netB].Aliases), []string{"shop-api"})
			},
		},
		{
			name: "--ip",
			set: func(e *cloneEnv, o *cloneOld) {
				o.hc.NetworkMode = container.NetworkMode(e.netA)
				o.nets = map[string]*network.EndpointSettings{e.netA: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: e.subnetA + "7"}}}
				o.netOrder = []string{e.netA}
			},
			check: func(t *testing.T, r cloneRun) {
				ep := r.new.NetworkSettings.Networks[r.env.netA]
				if ep == nil || ep.IPAMConfig == nil || ep.IPAMConfig.IPv4Address != r.env.subnetA+"7" {
					t.Fatalf("endpoint on %s = %+v, want static IP %s7", r.env.netA, ep, r.env.subnetA)
				}
				want := fmt.Sprintf("static IP %s7 on network %s", r.env.subnetA, r.env.netA)
				if !slices.Contains(r.spec.Exclusive, want) || !r.spec.Networks[0].Exclusive {
					t.Errorf("Exclusive %q, attachment exclusive %v; want %q listed", r.spec.Exclusive, r.spec.Networks[0].Exclusive, want)
				}
			},
		},
		{
			name: "--restart on-failure:3",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.hc.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 3}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "RestartPolicy", r.new.HostConfig.RestartPolicy, container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 3})
			},
		},
		{
			name: "-m 64m --cpus 0.5",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.hc.Memory, o.hc.NanoCPUs = 64<<20, 500_000_000
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "Memory", r.new.HostConfig.Memory, int64(64<<20))
				same(t, "MemorySwap", r.new.HostConfig.MemorySwap, r.old.HostConfig.MemorySwap)
				same(t, "NanoCPUs", r.new.HostConfig.NanoCPUs, int64(500_000_000))
			},
		},
		{
			name: "--cap-add --cap-drop",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.hc.CapAdd, o.hc.CapDrop = strslice.StrSlice{"NET_ADMIN"}, strslice.StrSlice{"MKNOD"}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "CapAdd", r.new.HostConfig.CapAdd, strslice.StrSlice{"CAP_NET_ADMIN"})
				same(t, "CapDrop", r.new.HostConfig.CapDrop, strslice.StrSlice{"CAP_MKNOD"})
			},
		},
		{
			name: "--security-opt no-new-privileges",
			set:  func(_ *cloneEnv, o *cloneOld) { o.hc.SecurityOpt = []string{"no-new-privileges"} },
			check: func(t *testing.T, r cloneRun) {
				same(t, "SecurityOpt", r.new.HostConfig.SecurityOpt, []string{"no-new-privileges"})
			},
		},
		{
			name: "--log-driver json-file --log-opt max-size=1m",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.hc.LogConfig = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "1m"}}
			},
			check: func(t *testing.T, r cloneRun) {
				// The engine adds its own default log options (daemon.json).
				same(t, "LogConfig", r.new.HostConfig.LogConfig, r.old.HostConfig.LogConfig)
				same(t, "LogConfig max-size", r.new.HostConfig.LogConfig.Config["max-size"], "1m")
			},
		},
		{
			name: "--add-host",
			set:  func(_ *cloneEnv, o *cloneOld) { o.hc.ExtraHosts = []string{"db.local:10.0.0.5"} },
			check: func(t *testing.T, r cloneRun) {
				same(t, "ExtraHosts", r.new.HostConfig.ExtraHosts, []string{"db.local:10.0.0.5"})
			},
		},
		{
			name: "--tmpfs",
			set:  func(_ *cloneEnv, o *cloneOld) { o.hc.Tmpfs = map[string]string{"/run": "size=1m"} },
			check: func(t *testing.T, r cloneRun) {
				same(t, "Tmpfs", r.new.HostConfig.Tmpfs, map[string]string{"/run": "size=1m"})
			},
		},
		{
			name: "--sysctl",
			set:  func(_ *cloneEnv, o *cloneOld) { o.hc.Sysctls = map[string]string{"net.core.somaxconn": "1024"} },
			check: func(t *testing.T, r cloneRun) {
				same(t, "Sysctls", r.new.HostConfig.Sysctls, map[string]string{"net.core.somaxconn": "1024"})
			},
		},
		{
			name: "--ulimit nofile=1024:2048",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.hc.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "Ulimits", r.new.HostConfig.Ulimits, []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}})
			},
		},
		{
			name: "--init",
			set:  func(_ *cloneEnv, o *cloneOld) { yes := true; o.hc.Init = &yes },
			check: func(t *testing.T, r cloneRun) {
				if r.new.HostConfig.Init == nil || !*r.new.HostConfig.Init {
					t.Errorf("Init = %v, want true", r.new.HostConfig.Init)
				}
			},
		},
		{
			name: "--read-only",
			set:  func(_ *cloneEnv, o *cloneOld) { o.hc.ReadonlyRootfs = true },
			check: func(t *testing.T, r cloneRun) {
				same(t, "ReadonlyRootfs", r.new.HostConfig.ReadonlyRootfs, true)
			},
		},
		{
			name: "--shm-size 128m",
			set:  func(_ *cloneEnv, o *cloneOld) { o.hc.ShmSize = 128 << 20 },
			check: func(t *testing.T, r cloneRun) {
				same(t, "ShmSize", r.new.HostConfig.ShmSize, int64(128<<20))
			},
		},
		{
			name: "--dns --dns-search --dns-option",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.hc.DNS, o.hc.DNSSearch, o.hc.DNSOptions = []string{"10.0.0.53"}, []string{"example.org"}, []string{"ndots:2"}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "DNS", r.new.HostConfig.DNS, []string{"10.0.0.53"})
				same(t, "DNSSearch", r.new.HostConfig.DNSSearch, []string{"example.org"})
				same(t, "DNSOptions", r.new.HostConfig.DNSOptions, []string{"ndots:2"})
			},
		},
		{
			name: "-p 127.0.0.1:PORT:8080",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.hc.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "18093"}}}
				o.cfg.ExposedPorts = nat.PortSet{"8080/tcp": {}}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "PortBindings", r.new.HostConfig.PortBindings, nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "18093"}}})
				same(t, "Exclusive", r.spec.Exclusive, []string{"host port 127.0.0.1:18093/tcp"})
			},
		},
		{
			name: "-p 127.0.0.1::8080",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.hc.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1"}}}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "PortBindings", r.new.HostConfig.PortBindings, nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1"}}})
				if len(r.spec.Exclusive) != 0 {
					t.Errorf("Exclusive = %q, want none for a random port", r.spec.Exclusive)
				}
			},
		},
		{
			name: "--hostname --domainname",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Hostname, o.cfg.Domainname = "web-host", "example.org"
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "Hostname", r.new.Config.Hostname, "web-host")
				same(t, "Domainname", r.new.Config.Domainname, "example.org")
			},
		},
		{
			name: "--stop-signal --stop-timeout",
			set: func(_ *cloneEnv, o *cloneOld) {
				timeout := 7
				o.cfg.StopSignal, o.cfg.StopTimeout = "SIGUSR1", &timeout
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "StopSignal", r.new.Config.StopSignal, "SIGUSR1")
				if r.new.Config.StopTimeout == nil || *r.new.Config.StopTimeout != 7 {
					t.Errorf("StopTimeout = %v, want 7", r.new.Config.StopTimeout)
				}
			},
		},
		{
			name: "--health-cmd",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Healthcheck = &container.HealthConfig{Test: []string{"CMD-SHELL", "/demoapp -probe http://127.0.0.1:8080/version"}}
			},
			check: func(t *testing.T, r cloneRun) {
				hc := r.new.Config.Healthcheck
				same(t, "Healthcheck.Test", hc.Test, []string{"CMD-SHELL", "/demoapp -probe http://127.0.0.1:8080/version"})
				same(t, "Healthcheck.Interval (the new image's)", hc.Interval, time.Second)
			},
		},
		{
			name: "--no-healthcheck",
			set: func(_ *cloneEnv, o *cloneOld) {
				o.cfg.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
			},
			check: func(t *testing.T, r cloneRun) {
				same(t, "Healthcheck.Test", r.new.Config.Healthcheck.Test, []string{"NONE"})
			},
		},
		{
			name: "the clone starts and serves the new version",
			set: func(e *cloneEnv, o *cloneOld) {
				yes := true
				o.cfg.Env = []string{"MODE=normal"}
				o.cfg.Volumes = map[string]struct{}{"/anon": {}}
				o.hc.Init, o.hc.ReadonlyRootfs = &yes, true
				o.hc.Tmpfs = map[string]string{"/tmp": ""}
				o.hc.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1"}}}
				o.hc.NetworkMode = container.NetworkMode(e.netB)
				o.nets = map[string]*network.EndpointSettings{e.netB: {Aliases: []string{"web"}}}
				o.netOrder = []string{e.netB}
			},
			check: func(t *testing.T, r cloneRun) {
				startAndWaitHealthy(t, r.env.cli, r.new.ID)
				got := httpGetContainer(t, r.env.cli, r.new.ID, "/version")
				if strings.TrimSpace(got) != "v2" {
					t.Errorf("GET /version = %q, want v2", got)
				}
			},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := &cloneOld{
				cfg: &container.Config{Image: env.oldRef, Labels: map[string]string{"baton.test": "1"}},
				hc:  &container.HostConfig{},
			}
			if tc.set != nil {
				tc.set(env, o)
			}
			tc.check(t, env.run(t, o))
		})
	}
}

// run creates the old container, clones it and creates the new one.
func (e *cloneEnv) run(t *testing.T, o *cloneOld) cloneRun {
	t.Helper()
	name := e.prefix + "-" + randomHex(t, 3)
	// Registered before the containers, so it runs after they are removed.
	var volumes []string
	e.removeVolumesAtCleanup(t, &volumes)
	for _, b := range o.hc.Binds {
		if src, _, _ := strings.Cut(b, ":"); !strings.HasPrefix(src, "/") {
			if _, err := e.cli.VolumeCreate(t.Context(), volume.CreateOptions{Name: src, Labels: map[string]string{"baton.test": "1"}}); err != nil {
				t.Fatalf("create volume %s: %v", src, err)
			}
			volumes = append(volumes, src)
		}
	}

	old := e.createContainer(t, name, o.cfg, o.hc, o.netOrder, o.nets)
	// The new container mounts the old one's anonymous volumes by name.
	for _, m := range old.Mounts {
		if m.Type == mount.TypeVolume && !slices.Contains(volumes, m.Name) {
			volumes = append(volumes, m.Name)
		}
	}

	spec, err := CloneConfig(old, e.oldImg, e.newImg, e.newRef)
	if err != nil {
		t.Fatalf("CloneConfig: %v", err)
	}
	cfg := *spec.Config
	cfg.Labels = map[string]string{"baton.test": "1"}
	for k, v := range spec.Config.Labels {
		cfg.Labels[k] = v
	}
	var order []string
	eps := map[string]*network.EndpointSettings{}
	for _, n := range spec.Networks {
		order = append(order, n.Name)
		eps[n.Name] = n.Endpoint
	}
	created := e.createContainer(t, name+"-new", &cfg, spec.HostConfig, order, eps)
	return cloneRun{env: e, old: old, spec: spec, new: created}
}

// createContainer creates a container on its first network and connects it
// to the others (API 1.41 takes one network at create), then inspects it.
func (e *cloneEnv) createContainer(t *testing.T, name string, cfg *container.Config, hc *container.HostConfig, order []string, eps map[string]*network.EndpointSettings) container.InspectResponse {
	t.Helper()
	ctx := t.Context()
	var netCfg *network.NetworkingConfig
	if len(order) > 0 {
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{order[0]: eps[order[0]]}}
	}
	resp, err := e.cli.ContainerCreate(ctx, cfg, hc, netCfg, nil, name)
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupContext(ctx)
		defer cancel()
		if err := e.cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove container %s: %v", name, err)
		}
	})
	for _, n := range order[min(1, len(order)):] {
		if err := e.cli.NetworkConnect(ctx, n, resp.ID, eps[n]); err != nil {
			t.Fatalf("container %s: connect network %s: %v", name, n, err)
		}
	}
	got, err := e.cli.ContainerInspect(ctx, resp.ID)
	if err != nil {
		t.Fatalf("inspect container %s: %v", name, err)
	}
	return got
}

// removeVolumesAtCleanup removes the volumes named in *names when the
// test ends; the containers remove their anonymous volumes themselves, so
// some may be gone already.
func (e *cloneEnv) removeVolumesAtCleanup(t *testing.T, names *[]string) {
	ctx := t.Context()
	t.Cleanup(func() {
		ctx, cancel := cleanupContext(ctx)
		defer cancel()
		for _, v := range *names {
			if err := e.cli.VolumeRemove(ctx, v, true); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("remove volume %s: %v", v, err)
			}
		}
	})
}

// newCloneEnv connects to the engine and makes the images and networks
// every case shares, once for the whole test.
func newCloneEnv(t *testing.T) *cloneEnv {
	t.Helper()
	ctx := t.Context()
	cli, err := New(ctx)
	if err != nil {
		t.Fatalf("this test needs the Docker Engine (run with -short to skip): %v", err)
	}
	t.Cleanup(func() {
		if err := cli.Close(); err != nil {
			t.Errorf("close docker client: %v", err)
		}
	})
	e := &cloneEnv{cli: cli, prefix: "baton-test-clone-" + randomHex(t, 4)}

	bin := filepath.Join(t.TempDir(), "demoapp")
	gobuild := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/baton-sh/baton/cmd/demoapp")
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := gobuild.CombinedOutput(); err != nil {
		t.Fatalf("build demoapp: %v\n%s", err, out)
	}
	e.oldRef, e.newRef = e.prefix+":v1", e.prefix+":v2"
	e.oldImg = e.importImage(t, e.oldRef, cloneImageV1, bin)
	e.newImg = e.importImage(t, e.newRef, cloneImageV2, bin)

	e.netA, e.subnetA = e.createNetwork(t, e.prefix+"-a", true)
	e.netB, _ = e.createNetwork(t, e.prefix+"-b", false)
	return e
}

// importImage imports img as ref, with the demoapp binary read from bin.
func (e *cloneEnv) importImage(t *testing.T, ref string, img cloneImage, bin string) image.InspectResponse {
	t.Helper()
	ctx := t.Context()
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range img.dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: img.bin, Mode: 0o755, Size: int64(len(binData))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(binData); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	body, err := e.cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{Changes: img.changes})
	if err != nil {
		t.Fatalf("import image %s: %v", ref, err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupContext(ctx)
		defer cancel()
		if _, err := e.cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove image %s: %v", ref, err)
		}
	})
	err = jsonmessage.DisplayJSONMessagesStream(body, io.Discard, 0, false, nil)
	if cerr := body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("import image %s: %v", ref, err)
	}
	inspected, err := e.cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("inspect image %s: %v", ref, err)
	}
	return inspected
}

// createNetwork creates a bridge network; with a subnet, one picked at
// random from 10.128.0.0/9 (retrying on overlaps with networks other tests
// hold), so containers can be given static IPs. It returns the name and,
// with a subnet, the "10.x.y." prefix of its addresses.
func (e *cloneEnv) createNetwork(t *testing.T, name string, withSubnet bool) (string, string) {
	t.Helper()
	ctx := t.Context()
	opts := network.CreateOptions{Driver: "bridge", Labels: map[string]string{"baton.test": "1"}}
	var prefix string
	var err error
	for range 8 {
		if withSubnet {
			prefix = fmt.Sprintf("10.%d.%d.", 128+randomInt(t, 127), randomInt(t, 256))
			opts.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: prefix + "0/24"}}}
		}
		if _, err = e.cli.NetworkCreate(ctx, name, opts); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupContext(ctx)
		defer cancel()
		if err := e.cli.NetworkRemove(ctx, name); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove network %s: %v", name, err)
		}
	})
	return name, prefix
}

// startAndWaitHealthy starts the container and waits for the engine to
// report it healthy.
func startAndWaitHealthy(t *testing.T, cli *Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// Since replays what happened before the subscription took effect.
	since := strconv.FormatInt(time.Now().Unix(), 10)
	msgs, errs := cli.Events(ctx, events.ListOptions{Since: since, Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("container", id),
	)})
	if err := cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		t.Fatalf("start container %s: %v", shortID(id), err)
	}
	for {
		select {
		case m := <-msgs:
			switch m.Action {
			case events.ActionHealthStatusHealthy:
				return
			case events.ActionDie, events.ActionHealthStatusUnhealthy:
				t.Fatalf("container %s: %s before it turned healthy", shortID(id), m.Action)
			}
		case err := <-errs:
			switch {
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				t.Fatalf("container %s did not turn healthy within 30s", shortID(id))
			default:
				t.Fatalf("container %s: events: %v", shortID(id), err)
			}
		}
	}
}

// httpGetContainer GETs path from the container's published port 8080.
func httpGetContainer(t *testing.T, cli *Client, id, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatalf("inspect container %s: %v", shortID(id), err)
	}
	b := c.NetworkSettings.Ports["8080/tcp"]
	if len(b) == 0 {
		t.Fatalf("container %s publishes no port for 8080/tcp: %v", shortID(id), c.NetworkSettings.Ports)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b[0].HostIP+":"+b[0].HostPort+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s from container %s: %v", path, shortID(id), err)
	}
	defer func() {
		if err := resp.Body.Close(); err != nil {
			t.Errorf("close response: %v", err)
		}
	}()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s from container %s: %v", path, shortID(id), err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s from container %s: %s %s", path, shortID(id), resp.Status, body)
	}
	return string(body)
}

// cleanupContext gives cleanups a context of their own: the test's is
// canceled before they run.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// sameVolume checks the new container mounts the very volume the old one
// has at dst.
func sameVolume(t *testing.T, r cloneRun, dst string) {
	t.Helper()
	find := func(c container.InspectResponse) string {
		for _, m := range c.Mounts {
			if m.Destination == dst && m.Type == mount.TypeVolume {
				return m.Name
			}
		}
		return ""
	}
	o, n := find(r.old), find(r.new)
	if o == "" || o != n {
		t.Errorf("volume at %s: old container has %q, new one %q; want the same volume", dst, o, n)
	}
}

func hasEnv(t *testing.T, env []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(env, w) {
			t.Errorf("env %q lacks %q", env, w)
		}
	}
}

func lacksEnv(t *testing.T, env []string, key string) {
	t.Helper()
	if _, ok := envMap(env)[key]; ok {
		t.Errorf("env %q has %s", env, key)
	}
}

func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randomInt(t *testing.T, n int64) int64 {
	t.Helper()
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return v.Int64()
}
