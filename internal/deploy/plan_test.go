package deploy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/baton-sh/baton/dockerctl"
)

// planFacts are the facts of "web" running shop/web:1 (image sha256:1),
// exposing 8080, on network shop, deploying shop/web:2 (sha256:2) with
// --pull missing; change sets one thing about them.
func planFacts(t *testing.T, change func(f *Facts, old *container.InspectResponse)) *Facts {
	t.Helper()
	imgOf := func(id, version string) image.InspectResponse {
		cfg := dockerspec.DockerOCIImageConfig{}
		cfg.Env = []string{"VERSION=" + version}
		cfg.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
		return image.InspectResponse{ID: id, Config: &cfg}
	}
	old := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID: "old-id", Name: "/web", Image: "sha256:1",
			State:      &container.State{Running: true, Status: "running"},
			HostConfig: &container.HostConfig{NetworkMode: "shop"},
		},
		Config: &container.Config{Image: "shop/web:1", Env: []string{"VERSION=1"}, ExposedPorts: nat.PortSet{"8080/tcp": {}},
			Labels: map[string]string{"app": "shop"}},
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"shop": {NetworkID: "shop-id"}}},
	}
	f := &Facts{
		Service: Service{Key: "web", Name: "web"}, Ref: "shop/web:2", Pull: PullMissing,
		OldImage: imgOf("sha256:1", "1"), NewImage: imgOf("sha256:2", "2"), NewImageKnown: true,
		Settings: DefaultSettings(), Recorded: DefaultSettings(), BatonNet: dockerctl.ServiceNetwork("web"),
	}
	f.Settings.Port, f.Recorded.Port = 8080, 8080
	if change != nil {
		change(f, &old)
	}
	f.Old = old
	// A container baton refuses (network mode host) has no clone: decide
	// must refuse it before it needs one.
	f.Spec, _ = dockerctl.CloneConfig(old, f.OldImage, f.NewImage, f.Ref)
	return f
}

func sameImageFacts(f *Facts, _ *container.InspectResponse) {
	f.Ref, f.NewImage = "shop/web:1", f.OldImage
}

func kinds(p *Plan) []StepKind {
	var out []StepKind
	for _, s := range p.steps {
		out = append(out, s.Kind)
	}
	return out
}

// TestDecide: the one deploy decision, from facts to plan.
func TestDecide(t *testing.T) {
	plain := []StepKind{StepCreate, StepJoin, StepWarm, StepStopOld, StepFinalize}
	for _, tc := range []struct {
		name    string
		change  func(f *Facts, old *container.InspectResponse)
		spec    func(s *dockerctl.CloneSpec) // changes the new configuration
		wantErr error                        // the refusal, if any
		errText string                       // in the refusal
		check   func(t *testing.T, p *Plan)
	}{
		{name: "image unchanged, settings unchanged: up to date", change: sameImageFacts, check: func(t *testing.T, p *Plan) {
			if !p.UpToDate || len(p.Reasons) != 0 || !slices.Equal(kinds(p), []StepKind{StepNothing}) {
				t.Fatalf("up to date %v, reasons %q, steps %v", p.UpToDate, p.Reasons, kinds(p))
			}
			if !strings.HasPrefix(p.Steps[0], "nothing: web already runs") {
				t.Fatalf("steps %q", p.Steps)
			}
		}},
		{name: "image changed", check: func(t *testing.T, p *Plan) {
			if p.UpToDate || len(p.Reasons) != 1 || !strings.Contains(p.Reasons[0], "image changed") {
				t.Fatalf("up to date %v, reasons %q", p.UpToDate, p.Reasons)
			}
			if !slices.Equal(kinds(p), plain) {
				t.Fatalf("steps %v, want %v", kinds(p), plain)
			}
			if p.config.Image != "shop/web:2" || p.hostConfig.NetworkMode != "shop" || p.Isolated {
				t.Fatalf("image %s, network mode %s, isolated %v", p.config.Image, p.hostConfig.NetworkMode, p.Isolated)
			}
			l := p.config.Labels
			if l[LabelManaged] != "true" || l[LabelReplaces] != "old-id" || l[LabelPreviousImage] != "shop/web:1" || l[LabelPreviousImageID] != "sha256:1" || l["app"] != "shop" {
				t.Fatalf("labels %v", l)
			}
			if !slices.ContainsFunc(p.Changes, func(d dockerctl.FieldDiff) bool { return d.Field == "env VERSION" }) {
				t.Fatalf("changes %v lack the new image's VERSION", p.Changes)
			}
		}},
		{name: "image unchanged, --http-probe changed, --pull missing", change: func(f *Facts, old *container.InspectResponse) {
			sameImageFacts(f, old)
			f.Settings.HTTPProbe = "/healthz"
		}, check: func(t *testing.T, p *Plan) {
			if p.UpToDate || len(p.Reasons) != 1 || !strings.Contains(p.Reasons[0], "settings changed (port=8080 -> http-probe=/healthz port=8080)") {
				t.Fatalf("up to date %v, reasons %q", p.UpToDate, p.Reasons)
			}
			if k := kinds(p); k[0] != StepExplain || !strings.Contains(p.Steps[0], "although the image is unchanged: settings changed") {
				t.Fatalf("steps %q", p.Steps)
			}
			if p.config.Labels["baton.http-probe"] != "/healthz" {
				t.Fatalf("the new setting is not recorded: %v", p.config.Labels)
			}
		}},
		{name: "image unchanged, --kernel-path turned on: up to date, its Ensure sets the route", change: func(f *Facts, old *container.InspectResponse) {
			sameImageFacts(f, old)
			f.Settings.NginxUpstream, f.Settings.NginxReload, f.Settings.KernelPath = "/etc/nginx/baton/web.conf", "nginx -s reload", true
			f.Recorded.NginxUpstream, f.Recorded.NginxReload = "/etc/nginx/baton/web.conf", "nginx -s reload"
		}, check: func(t *testing.T, p *Plan) {
			if !p.UpToDate || len(p.Reasons) != 0 {
				t.Fatalf("up to date %v, reasons %q: the kernel path changes nothing on the container", p.UpToDate, p.Reasons)
			}
		}},
		{name: "image unchanged, --kernel-path and --drain changed: the drain makes the redeploy", change: func(f *Facts, old *container.InspectResponse) {
			sameImageFacts(f, old)
			f.Settings.KernelPath, f.Settings.Drain = true, 5e9
		}, check: func(t *testing.T, p *Plan) {
			if p.UpToDate || len(p.Reasons) != 1 || !strings.Contains(p.Reasons[0], "settings changed (port=8080 -> drain=5s port=8080)") {
				t.Fatalf("up to date %v, reasons %q", p.UpToDate, p.Reasons)
			}
		}},
		{name: "image unchanged, --force", change: func(f *Facts, old *container.InspectResponse) {
			sameImageFacts(f, old)
			f.Force = true
		}, check: func(t *testing.T, p *Plan) {
			if p.UpToDate || !slices.Equal(p.Reasons, []string{"--force"}) || !slices.Equal(kinds(p), plain) {
				t.Fatalf("up to date %v, reasons %q, steps %v", p.UpToDate, p.Reasons, kinds(p))
			}
		}},
		{name: "image unchanged, compose file changed", change: func(f *Facts, old *container.InspectResponse) {
			sameImageFacts(f, old)
			f.Changed = "the compose file changed"
		}, check: func(t *testing.T, p *Plan) {
			if p.UpToDate || p.steps[0].Kind != StepExplain || !strings.HasSuffix(p.Steps[0], "the compose file changed") {
				t.Fatalf("up to date %v, steps %q", p.UpToDate, p.Steps)
			}
		}},
		{name: "dry run, --pull always, image on the host unchanged: the pull decides", change: func(f *Facts, old *container.InspectResponse) {
			sameImageFacts(f, old)
			f.DryRun, f.Pull = true, PullAlways
		}, check: func(t *testing.T, p *Plan) {
			if p.UpToDate || !strings.Contains(p.Pull, "would pull it again") || !strings.Contains(p.Reasons[0], "--pull always") {
				t.Fatalf("up to date %v, pull %q, reasons %q", p.UpToDate, p.Pull, p.Reasons)
			}
		}},
		{name: "dry run, --pull missing, image on the host unchanged: up to date", change: func(f *Facts, old *container.InspectResponse) {
			sameImageFacts(f, old)
			f.DryRun = true
		}, check: func(t *testing.T, p *Plan) {
			if !p.UpToDate {
				t.Fatalf("reasons %q", p.Reasons)
			}
		}},
		{name: "dry run, image not on the host", change: func(f *Facts, _ *container.InspectResponse) {
			f.DryRun, f.NewImageKnown, f.NewImage = true, false, f.OldImage
		}, check: func(t *testing.T, p *Plan) {
			if p.UpToDate || !p.ChangesUnknown || p.Changes != nil || !strings.HasPrefix(p.Pull, "would pull shop/web:2") || p.NewImageID != "" {
				t.Fatalf("up to date %v, changes unknown %v %v, pull %q", p.UpToDate, p.ChangesUnknown, p.Changes, p.Pull)
			}
		}},
		{name: "dry run, image not on the host, --pull never", change: func(f *Facts, _ *container.InspectResponse) {
			f.DryRun, f.NewImageKnown, f.Pull = true, false, PullNever
		}, check: func(t *testing.T, p *Plan) {
			if !strings.Contains(p.Pull, "the deploy would fail") {
				t.Fatalf("pull %q", p.Pull)
			}
		}},
		{name: "published port: warms up isolated, hands over", change: func(_ *Facts, old *container.InspectResponse) {
			old.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "8080"}}}
		}, check: func(t *testing.T, p *Plan) {
			want := []StepKind{StepCreate, StepJoin, StepWarm, StepStopOld, StepHandover, StepFinalize}
			if !p.Isolated || !slices.Equal(kinds(p), want) || p.hostConfig.NetworkMode != container.NetworkMode(dockerctl.ServiceNetwork("web")) {
				t.Fatalf("isolated %v, steps %v, network mode %s", p.Isolated, kinds(p), p.hostConfig.NetworkMode)
			}
			if !strings.Contains(p.Steps[1], "internal copies of shop") || !strings.Contains(p.Steps[4], "connect the new container to shop") {
				t.Fatalf("steps %q", p.Steps)
			}
		}},
		{name: "relay: switch, then drain", change: func(f *Facts, _ *container.InspectResponse) {
			f.Settings.NginxUpstream, f.Settings.NginxReload = "/etc/nginx/web.conf", "nginx -s reload"
		}, check: func(t *testing.T, p *Plan) {
			want := []StepKind{StepCreate, StepJoin, StepWarm, StepSwitch, StepDrain, StepStopOld, StepFinalize}
			if p.TrafficMode != TrafficRelay || !slices.Equal(kinds(p), want) || !strings.Contains(p.Steps[3], "relay") {
				t.Fatalf("mode %s, steps %q", p.TrafficMode, p.Steps)
			}
		}},
		{name: "nginx upstream file without the relay", change: func(f *Facts, _ *container.InspectResponse) {
			f.Settings.NginxUpstream, f.Settings.NginxReload, f.Settings.Relay = "/etc/nginx/web.conf", "nginx -s reload", false
		}, check: func(t *testing.T, p *Plan) {
			if p.TrafficMode != TrafficNginx || !strings.HasPrefix(p.Steps[3], "rewrite /etc/nginx/web.conf") {
				t.Fatalf("mode %s, steps %q", p.TrafficMode, p.Steps)
			}
		}},
		{name: "rollback pins the exact image", change: func(f *Facts, _ *container.InspectResponse) {
			f.ImageID = "sha256:2"
		}, check: func(t *testing.T, p *Plan) {
			if p.config.Image != "sha256:2" || p.NewImage != "shop/web:2" {
				t.Fatalf("image %s, shown as %s", p.config.Image, p.NewImage)
			}
		}},
		{name: "stateful old container refused", change: func(_ *Facts, old *container.InspectResponse) {
			old.Config.Image = "postgres:16"
			old.HostConfig.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: "pgdata", Target: "/var/lib/postgresql/data"}}
		}, wantErr: ErrUnsupported, errText: "is a database"},
		{name: "stateful label false allows it", change: func(_ *Facts, old *container.InspectResponse) {
			old.Config.Image = "postgres:16"
			old.Config.Labels[LabelStateful] = "false"
			old.HostConfig.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: "pgdata", Target: "/var/lib/postgresql/data"}}
		}, check: func(t *testing.T, p *Plan) {
			if p.UpToDate {
				t.Fatal("up to date")
			}
		}},
		{name: "new configuration stateful refused", spec: func(s *dockerctl.CloneSpec) {
			s.Config.Image = "redis:7"
			s.HostConfig.Binds = []string{"redisdata:/data"}
		}, wantErr: ErrUnsupported, errText: "is a database"},
		{name: "not running", change: func(_ *Facts, old *container.InspectResponse) {
			old.State = &container.State{Status: "exited"}
		}, wantErr: ErrNotRunning, errText: "start it first"},
		{name: "network mode host", change: func(_ *Facts, old *container.InspectResponse) {
			old.HostConfig.NetworkMode = "host"
		}, wantErr: ErrUnsupported, errText: "network mode host"},
		{name: "probe without a port", change: func(f *Facts, _ *container.InspectResponse) {
			f.Settings.Port, f.Settings.HTTPProbe = 0, "/healthz"
		}, wantErr: ErrInvalid, errText: "--http-probe needs the app's port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := planFacts(t, tc.change)
			if tc.spec != nil {
				tc.spec(f.Spec)
			}
			p, err := decide(f)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errText) || ExitCode(err) != 2 {
					t.Fatalf("got %v (exit %d), want %v naming %q", err, ExitCode(err), tc.wantErr, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("decide: %v", err)
			}
			if len(p.Steps) != len(p.steps) {
				t.Fatalf("printed steps %q differ from the plan's %v", p.Steps, kinds(p))
			}
			tc.check(t, p)
		})
	}
}

// TestDecideNetworkNone: a container without networking can be replaced,
// but nothing can probe it or move traffic to it.
func TestDecideNetworkNone(t *testing.T) {
	none := func(f *Facts, old *container.InspectResponse) {
		old.HostConfig.NetworkMode = "none"
		old.NetworkSettings.Networks = nil
		f.Settings.Port = 0
	}
	p, err := decide(planFacts(t, none))
	if err != nil || slices.Contains(kinds(p), StepJoin) || p.nets.UseBaton {
		t.Fatalf("plan %v (uses baton's network %v), %v", kinds(p), p != nil && p.nets.UseBaton, err)
	}
	_, err = decide(planFacts(t, func(f *Facts, old *container.InspectResponse) {
		none(f, old)
		f.Settings.TCPProbe, f.Settings.Port = true, 8080
	}))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "network mode none") {
		t.Fatalf("got %v, want a refusal naming network mode none", err)
	}
}

// TestPlanFromRecord: recovery walks the same steps after the point of no
// return as the deploy it finishes would have.
func TestPlanFromRecord(t *testing.T) {
	f := planFacts(t, func(_ *Facts, old *container.InspectResponse) {
		old.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "8080"}}}
	})
	p, err := decide(f)
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{Service: f.Service, OldName: "web", NewName: newName("web", "<id>"), Settings: p.settings, Handover: p.nets.AtHandover, Isolated: true}
	got := planFromRecord(rec)
	i := slices.IndexFunc(p.steps, func(s Step) bool { return s.Kind == StepStopOld })
	if !slices.Equal(got.steps, p.steps[i+1:]) {
		t.Fatalf("recovery steps %v, deploy's after the stop %v", got.steps, p.steps[i+1:])
	}
	if got.TrafficMode != p.TrafficMode {
		t.Fatalf("traffic mode %s, want %s", got.TrafficMode, p.TrafficMode)
	}
}
