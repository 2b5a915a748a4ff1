package traffic

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
)

// helperEngine is an engine with at most one container, the helper's name;
// it records what baton asks of it.
type helperEngine struct {
	Engine
	c        *container.InspectResponse
	created  *container.HostConfig
	calls    []string
	execOut  string
	kpExists bool // the service's kernel network
}

func (e *helperEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{ID: "sha256:" + strings.TrimPrefix(ref, "baton-self:")}, nil
}

func (e *helperEngine) NetworkInspect(_ context.Context, name string, _ network.InspectOptions) (network.Inspect, error) {
	e.calls = append(e.calls, "network "+name)
	if !e.kpExists {
		return network.Inspect{}, errdefs.NotFound(errNotFoundText(name))
	}
	return network.Inspect{Name: name}, nil
}

func (e *helperEngine) ContainerInspect(_ context.Context, name string) (container.InspectResponse, error) {
	e.calls = append(e.calls, "inspect")
	if e.c == nil || name != KernelHelperName {
		return container.InspectResponse{}, errdefs.NotFound(errNotFoundText(name))
	}
	return *e.c, nil
}

type errNotFoundText string

func (e errNotFoundText) Error() string { return "no such container: " + string(e) }

func (e *helperEngine) EnsureSelfImage(context.Context) (string, error) { return "baton-self:new", nil }

func (e *helperEngine) ContainerCreate(_ context.Context, cfg *container.Config, host *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, name string) (container.CreateResponse, error) {
	e.calls = append(e.calls, "create "+name)
	e.created = host
	e.c = &container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: "helper-id", Image: "sha256:" + strings.TrimPrefix(cfg.Image, "baton-self:"), State: &container.State{Running: false}, HostConfig: host}, Config: cfg}
	return container.CreateResponse{ID: "helper-id"}, nil
}

func (e *helperEngine) ContainerStart(context.Context, string, container.StartOptions) error {
	e.calls = append(e.calls, "start")
	e.c.State.Running = true
	return nil
}

func (e *helperEngine) ContainerRemove(context.Context, string, container.RemoveOptions) error {
	e.calls = append(e.calls, "remove")
	e.c = nil
	return nil
}

func (e *helperEngine) Exec(_ context.Context, id string, argv []string) (dockerctl.ExecResult, error) {
	e.calls = append(e.calls, "exec "+id+" "+strings.Join(argv[1:3], " "))
	return dockerctl.ExecResult{Stdout: e.execOut}, nil
}

func helperContainer(imageID, role string) *container.InspectResponse {
	return &container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: "helper-id", Image: imageID, State: &container.State{Running: true},
			HostConfig: &container.HostConfig{NetworkMode: network.NetworkHost, PidMode: "host", Binds: []string{helperRootBind}}},
		Config: &container.Config{Labels: map[string]string{deploy.LabelRole: role}},
	}
}

// The helper container: looked at without being made (a host without it
// has no rule of baton's); made, when a route needs it, with the host's
// root read-only and only the capabilities iptables, chroot and /proc need,
// never privileged; replaced when it runs another baton's image; and never
// exec'd into when the name is another container's.
func TestKernelHelperContainer(t *testing.T) {
	ctx := t.Context()
	e := &helperEngine{}
	r := &remoteKernel{eng: e}
	if has, err := r.has(ctx, "web"); err != nil || has || slices.ContainsFunc(e.calls, func(c string) bool { return strings.HasPrefix(c, "create") }) {
		t.Fatalf("has without a helper or a kernel network: %v %v, calls %v; want false and nothing made", has, err, e.calls)
	}
	// Without a helper but with the service's kernel network there may be
	// rules (a helper removed by hand): the helper is made to look.
	e.kpExists, e.execOut = true, "true\n"
	if has, err := r.has(ctx, "web"); err != nil || !has || !slices.Contains(e.calls, "create "+KernelHelperName) {
		t.Fatalf("has with a kernel network and no helper: %v %v, calls %v; want the helper made and asked", has, err, e.calls)
	}
	e.c, e.kpExists, e.execOut = nil, false, ""
	if _, err := r.rules(ctx, false); err != errNoHelper {
		t.Fatalf("rules without make: %v, want errNoHelper", err)
	}
	if err := r.remove(ctx, "web"); err != nil || e.c != nil {
		t.Fatalf("remove without a helper: %v", err)
	}
	e.calls = nil
	if _, err := r.rules(ctx, true); err != nil {
		t.Fatal(err)
	}
	h := e.created
	if h == nil || h.Privileged || !slices.Equal(h.CapDrop, []string{"ALL"}) || !h.ReadonlyRootfs || h.NetworkMode != network.NetworkHost || h.PidMode != "host" ||
		!slices.Contains(h.Binds, "/:/host:ro") || !slices.Contains(h.SecurityOpt, "no-new-privileges:true") {
		t.Fatalf("helper's host config %+v", h)
	}
	for _, c := range h.CapAdd {
		if !slices.Contains([]string{"NET_ADMIN", "NET_RAW", "SYS_CHROOT"}, c) {
			t.Errorf("helper gets capability %s", c)
		}
	}
	if e.c.Config.Labels[deploy.LabelRole] != RoleKernelHelper || e.c.Config.Image != "baton-self:new" || h.UsernsMode != "host" || !slices.Equal(e.c.Config.Cmd, []string{"kernel-helper", "wait"}) {
		t.Fatalf("helper's config %+v", e.c.Config)
	}
	// Running this baton's image: used as it is.
	e.calls = nil
	if _, err := r.rules(ctx, true); err != nil || slices.Contains(e.calls, "remove") {
		t.Fatalf("current helper: %v, calls %v", err, e.calls)
	}
	// Another baton's image: replaced before a route is set, used as it
	// is for a look.
	e.c, e.calls = helperContainer("sha256:old", RoleKernelHelper), nil
	if _, err := r.rules(ctx, false); err != nil || slices.Contains(e.calls, "remove") {
		t.Fatalf("old helper, a look: %v, calls %v", err, e.calls)
	}
	e.calls = nil
	if _, err := r.rules(ctx, true); err != nil || !slices.Equal(e.calls, []string{"inspect", "remove", "inspect", "create " + KernelHelperName, "start"}) {
		t.Fatalf("old helper: %v, calls %v; want it replaced", err, e.calls)
	}
	// In another network namespace than the host's: its answers would be
	// another firewall's; replaced to set a route, refused for a look.
	e.c, e.calls = helperContainer("sha256:new", RoleKernelHelper), nil
	e.c.HostConfig.NetworkMode = "bridge"
	if _, err := r.rules(ctx, false); err == nil || slices.Contains(e.calls, "remove") {
		t.Fatalf("helper off the host's network, a look: %v, calls %v; want refused", err, e.calls)
	}
	if _, err := r.rules(ctx, true); err != nil || !slices.Contains(e.calls, "remove") || !helperShaped(*e.c) {
		t.Fatalf("helper off the host's network, a route: %v, calls %v; want it replaced", err, e.calls)
	}
	// The name is someone else's container: refused, never exec'd into,
	// never removed; the same for a look without make.
	for _, make := range []bool{true, false} {
		e.c, e.calls = helperContainer("sha256:else", "app"), nil
		if _, err := r.rules(ctx, make); err == nil || !strings.Contains(err.Error(), "not baton's kernel path helper") || slices.Contains(e.calls, "remove") {
			t.Fatalf("foreign container (make %v): %v, calls %v", make, err, e.calls)
		}
		if _, ok, err := r.established(ctx, 1, 8080, netip.MustParseAddr("172.18.0.1")); ok || err == nil || slices.ContainsFunc(e.calls, func(c string) bool { return strings.HasPrefix(c, "exec") }) {
			t.Fatalf("foreign container: exec'd into, calls %v", e.calls)
		}
	}
	// The last route's removal takes the helper away; one that leaves
	// others keeps it.
	e.c, e.execOut = helperContainer("sha256:new", RoleKernelHelper), "false\n"
	if err := r.remove(ctx, "web"); err != nil || e.c == nil {
		t.Fatalf("remove with routes left: %v, helper %v", err, e.c)
	}
	e.execOut = "true\n"
	if err := r.remove(ctx, "web"); err != nil || e.c != nil {
		t.Fatalf("remove of the last route: %v, helper left %v", err, e.c)
	}
}

// On an engine on another machine the kernel path needs a relay nginx
// reaches on that host's address, and an nginx on the host: refused (exit
// 2's class) before anything is made, with the relay on a host address as
// the positive control.
func TestRemoteKernelPathRefusals(t *testing.T) {
	f := &Factory{Engine: &helperEngine{}, Remote: true}
	svc := deploy.Service{Name: "web", Key: "web"}
	base := deploy.Settings{NginxUpstream: "/etc/nginx/baton/web.conf", NginxReload: "nginx -s reload", Relay: true, KernelPath: true}
	for name, change := range map[string]func(*deploy.Settings){
		"relay on loopback":   func(s *deploy.Settings) { s.RelayAddress = "127.0.0.1" },
		"relay address unset": func(s *deploy.Settings) { s.RelayAddress = "" },
		"nginx container":     func(s *deploy.Settings) { s.RelayAddress = "10.0.0.5"; s.NginxContainer = "proxy"; s.NginxReload = "" },
	} {
		s := base
		change(&s)
		if _, err := f.New(t.Context(), svc, s); !errors.Is(err, deploy.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	s := base
	s.RelayAddress = "10.0.0.5"
	tr, err := f.New(t.Context(), svc, s)
	if k, ok := tr.(*KernelRelay); err != nil || !ok || k.remote == nil {
		t.Fatalf("relay on a host address: %T %v, want a KernelRelay through the helper", tr, err)
	}
}
