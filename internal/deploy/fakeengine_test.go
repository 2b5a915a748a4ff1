package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/baton-sh/baton/dockerctl"
)

// fakeEngine is a stateful, in-memory Docker Engine for unit tests of the
// deploy state machine. It models what the deploy relies on: containers
// with names, states, networks and published ports (one holder per host
// port, published only through a non-internal network, as Docker does),
// images, events for health and exits, and failure knobs.
type fakeEngine struct {
	mu           sync.Mutex
	containers   map[string]*fakeContainer // by ID
	images       map[string]image.InspectResponse
	internal     map[string]bool              // network name -> internal
	netLabels    map[string]map[string]string // network name -> labels (networks baton made)
	startNets    map[string][]string          // container name -> its networks when last started
	startAliases map[string][]string          // "container network" -> its aliases there when last started
	subs         []chan events.Message
	seq          int
	log          []string // calls, in order, for ordering assertions

	// failure knobs
	pullErr     error
	createErr   error
	startErr    map[string]error // by image ref of the container
	stopErr     error
	connectErr  map[string]error // by network name
	brokenConns []string         // connects that hit a held port (must stay empty)

	// killOn simulates SIGKILL of baton: the first call whose log entry
	// starts with it completes, then the calling goroutine exits on the
	// spot (runtime.Goexit), running no more deploy code.
	killOn  string
	killNow bool
	// execResult is what Exec answers (--pre-switch).
	execResult dockerctl.ExecResult
	// lateCreate simulates baton killed right after sending a create that
	// the engine finishes later: the caller exits at once and the
	// container appears after this delay.
	lateCreate time.Duration
	// slowRemove makes a remove take this long in the engine, which
	// refuses a second remove of the same container meanwhile.
	slowRemove time.Duration
}

type fakeContainer struct {
	c         container.InspectResponse
	health    string // behaviour on start: healthy, unhealthy, crash, none
	published []string
	created   int64
	removing  bool
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{
		containers:   map[string]*fakeContainer{},
		images:       map[string]image.InspectResponse{},
		internal:     map[string]bool{"shop": false, "bridge": false},
		netLabels:    map[string]map[string]string{},
		startNets:    map[string][]string{},
		startAliases: map[string][]string{},
		startErr:     map[string]error{},
		connectErr:   map[string]error{},
	}
}

// addImage registers an image; health says what containers of it do when
// started (healthy, unhealthy, crash, none = no HEALTHCHECK).
func (f *fakeEngine) addImage(ref, version, health string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("sha256:%064x", len(f.images)+1)
	cfg := dockerspec.DockerOCIImageConfig{}
	cfg.Env = []string{"PATH=/bin", "VERSION=" + version}
	cfg.Entrypoint = []string{"/app"}
	cfg.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	cfg.Labels = map[string]string{"fake.health": health}
	if health != "none" {
		cfg.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD", "/app", "-probe"}}
	}
	img := image.InspectResponse{ID: id, RepoTags: []string{ref}, Config: &cfg}
	f.images[ref] = img
	f.images[id] = img
	return id
}

// runOld starts a container the way a user would have.
func (f *fakeEngine) runOld(name, ref string, hostPort string, nets ...string) string {
	cfg := &container.Config{Image: ref, Env: []string{"DB=postgres://db"}, Labels: map[string]string{"app": "shop", "baton.enable": "true", "baton.stateful": "false"}}
	host := &container.HostConfig{NetworkMode: container.NetworkMode(nets[0]), RestartPolicy: container.RestartPolicy{Name: "unless-stopped"}}
	if hostPort != "" {
		host.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: hostPort}}}
	}
	eps := map[string]*network.EndpointSettings{nets[0]: {Aliases: []string{"web-alias"}}}
	resp, err := f.ContainerCreate(context.Background(), cfg, host, &network.NetworkingConfig{EndpointsConfig: eps}, nil, name)
	if err != nil {
		panic(err)
	}
	for _, n := range nets[1:] {
		if err := f.NetworkConnect(context.Background(), n, resp.ID, &network.EndpointSettings{}); err != nil {
			panic(err)
		}
	}
	if err := f.ContainerStart(context.Background(), resp.ID, container.StartOptions{}); err != nil {
		panic(err)
	}
	f.mu.Lock()
	f.log = nil
	f.mu.Unlock()
	return resp.ID
}

func (f *fakeEngine) record(format string, args ...any) {
	entry := fmt.Sprintf(format, args...)
	f.log = append(f.log, entry)
	glob, _ := path.Match(f.killOn, entry)
	if f.killOn != "" && (strings.HasPrefix(entry, f.killOn) || glob) {
		f.killNow = true
		f.killOn = ""
	}
}

// killIfDue is deferred (after the unlock) by every mutating call.
func (f *fakeEngine) killIfDue() {
	if f.killNow {
		f.killNow = false
		runtime.Goexit()
	}
}

func (f *fakeEngine) find(ref string) (*fakeContainer, error) {
	if c, ok := f.containers[ref]; ok {
		return c, nil
	}
	for _, c := range f.containers {
		if strings.TrimPrefix(c.c.Name, "/") == ref || (len(ref) >= 12 && strings.HasPrefix(c.c.ID, ref)) {
			return c, nil
		}
	}
	return nil, errdefs.NotFound(fmt.Errorf("no such container: %s", ref))
}

func (f *fakeEngine) emit(id string, action events.Action) {
	m := events.Message{Type: events.ContainerEventType, Action: action, Actor: events.Actor{ID: id}, TimeNano: time.Now().UnixNano()}
	for _, s := range f.subs {
		select {
		case s <- m:
		default:
		}
	}
}

func (f *fakeEngine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.find(id)
	if err != nil {
		return container.InspectResponse{}, err
	}
	return deepCopyInspect(c.c), nil
}

func (f *fakeEngine) ContainerList(_ context.Context, opts container.ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []container.Summary
	for _, c := range f.containers {
		if !matchLabels(c.c.Config.Labels, opts.Filters) {
			continue
		}
		out = append(out, container.Summary{ID: c.c.ID, ImageID: c.c.Image, Names: []string{c.c.Name}, Labels: c.c.Config.Labels, State: c.c.State.Status, Created: c.created})
	}
	return out, nil
}

func matchLabels(labels map[string]string, args filters.Args) bool {
	for _, want := range args.Get("label") {
		k, v, hasV := strings.Cut(want, "=")
		got, ok := labels[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	return true
}

func (f *fakeEngine) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, nc *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	f.mu.Lock()
	if d := f.lateCreate; d > 0 {
		f.lateCreate = 0
		f.mu.Unlock()
		go func() {
			time.Sleep(d)
			_, _ = f.ContainerCreate(context.WithoutCancel(ctx), cfg, host, nc, p, name)
		}()
		runtime.Goexit()
	}
	defer f.mu.Unlock()
	defer f.killIfDue()
	f.record("create %s", name)
	if f.createErr != nil {
		return container.CreateResponse{}, f.createErr
	}
	if _, err := f.find(name); err == nil {
		return container.CreateResponse{}, errdefs.Conflict(fmt.Errorf("name %s in use", name))
	}
	img, ok := f.images[cfg.Image]
	if !ok {
		return container.CreateResponse{}, errdefs.NotFound(fmt.Errorf("no such image %s", cfg.Image))
	}
	if nc != nil && len(nc.EndpointsConfig) > 1 {
		return container.CreateResponse{}, errors.New("API 1.41 takes one network at create")
	}
	f.seq++
	id := fmt.Sprintf("%064x", 0xc0ffee0000+f.seq)
	merged := *cfg
	merged.Env = append(append([]string{}, img.Config.Env...), cfg.Env...)
	if len(merged.Entrypoint) == 0 {
		merged.Entrypoint = img.Config.Entrypoint
	}
	merged.Labels = map[string]string{}
	for k, v := range img.Config.Labels {
		merged.Labels[k] = v
	}
	for k, v := range cfg.Labels {
		merged.Labels[k] = v
	}
	if merged.ExposedPorts == nil {
		merged.ExposedPorts = nat.PortSet{}
	}
	for p := range img.Config.ExposedPorts {
		merged.ExposedPorts[nat.Port(p)] = struct{}{}
	}
	if merged.Healthcheck == nil && img.Config.Healthcheck != nil {
		merged.Healthcheck = &container.HealthConfig{Test: img.Config.Healthcheck.Test}
	}
	hc := *host
	c := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID: id, Name: "/" + name, Image: img.ID, HostConfig: &hc,
			State:   &container.State{Status: "created"},
			Created: time.Now().UTC().Format(time.RFC3339Nano),
		},
		Config:          &merged,
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{}},
	}
	if nc != nil {
		for n, ep := range nc.EndpointsConfig {
			c.NetworkSettings.Networks[n] = f.endpoint(n, ep)
		}
	} else if host.NetworkMode != "" && host.NetworkMode != "none" {
		c.NetworkSettings.Networks[string(host.NetworkMode)] = f.endpoint(string(host.NetworkMode), nil)
	}
	f.containers[id] = &fakeContainer{c: c, health: img.Config.Labels["fake.health"], created: int64(f.seq)}
	return container.CreateResponse{ID: id}, nil
}

func (f *fakeEngine) endpoint(netName string, ep *network.EndpointSettings) *network.EndpointSettings {
	out := &network.EndpointSettings{}
	if ep != nil {
		*out = *ep
	}
	f.seq++
	out.NetworkID = netName
	out.IPAddress = fmt.Sprintf("10.0.%d.%d", len(netName), f.seq%250+2)
	return out
}

// hostPorts are the fixed host ports a container publishes.
func hostPorts(c container.InspectResponse) []string {
	var out []string
	for _, bs := range c.HostConfig.PortBindings {
		for _, b := range bs {
			if b.HostPort != "" && b.HostPort != "0" {
				out = append(out, b.HostIP+":"+b.HostPort)
			}
		}
	}
	return out
}

// publishable reports whether c has a gateway network (a non-internal one).
func (f *fakeEngine) publishable(c container.InspectResponse) bool {
	for n := range c.NetworkSettings.Networks {
		if !f.internal[n] {
			return true
		}
	}
	return false
}

func (f *fakeEngine) portHeld(port, except string) bool {
	for id, c := range f.containers {
		if id == except {
			continue
		}
		for _, p := range c.published {
			if p == port {
				return true
			}
		}
	}
	return false
}

func (f *fakeEngine) publish(fc *fakeContainer) error {
	if !f.publishable(fc.c) || len(fc.published) > 0 {
		return nil
	}
	ports := hostPorts(fc.c)
	for _, p := range ports {
		if f.portHeld(p, fc.c.ID) {
			return fmt.Errorf("Bind for %s failed: port is already allocated", p)
		}
	}
	fc.published = ports
	return nil
}

func (f *fakeEngine) ContainerStart(_ context.Context, id string, _ container.StartOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.killIfDue()
	fc, err := f.find(id)
	if err != nil {
		return err
	}
	f.record("start %s", strings.TrimPrefix(fc.c.Name, "/"))
	name := strings.TrimPrefix(fc.c.Name, "/")
	f.startNets[name] = slices.Sorted(maps.Keys(fc.c.NetworkSettings.Networks))
	for net, ep := range fc.c.NetworkSettings.Networks {
		f.startAliases[name+" "+net] = slices.Clone(ep.Aliases)
	}
	if err := f.startErr[fc.c.Config.Image]; err != nil {
		return err
	}
	if err := f.publish(fc); err != nil {
		return err
	}
	fc.c.State = &container.State{Status: "running", Running: true, Pid: 1000 + f.seq, StartedAt: time.Now().Add(-time.Hour).Format(time.RFC3339Nano)}
	if fc.c.Config.Healthcheck != nil {
		fc.c.State.Health = &container.Health{Status: "starting"}
	}
	f.emit(fc.c.ID, events.ActionStart)
	switch fc.health {
	case "healthy":
		fc.c.State.Health = &container.Health{Status: "healthy"}
		f.emit(fc.c.ID, events.ActionHealthStatus+": healthy")
	case "unhealthy":
		fc.c.State.Health = &container.Health{Status: "unhealthy", Log: []*container.HealthcheckResult{{ExitCode: 1, Output: "503 warming up forever"}}}
		f.emit(fc.c.ID, events.ActionHealthStatus+": unhealthy")
	case "crash":
		fc.c.State = &container.State{Status: "exited", ExitCode: 1, FinishedAt: time.Now().Format(time.RFC3339Nano)}
		fc.published = nil
		f.emit(fc.c.ID, events.ActionDie)
	}
	return nil
}

func (f *fakeEngine) ContainerStop(_ context.Context, id string, _ container.StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.killIfDue()
	fc, err := f.find(id)
	if err != nil {
		return err
	}
	f.record("stop %s", strings.TrimPrefix(fc.c.Name, "/"))
	if f.stopErr != nil {
		return f.stopErr
	}
	fc.c.State = &container.State{Status: "exited", FinishedAt: time.Now().Format(time.RFC3339Nano)}
	fc.published = nil
	f.emit(fc.c.ID, events.ActionDie)
	return nil
}

func (f *fakeEngine) ContainerRemove(_ context.Context, id string, opts container.RemoveOptions) error {
	f.mu.Lock()
	fc, err := f.find(id)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	if fc.removing {
		f.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("removal of container %s is already in progress", id))
	}
	if fc.c.State.Running && !opts.Force {
		f.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("container %s is running", id))
	}
	f.record("remove %s", strings.TrimPrefix(fc.c.Name, "/"))
	if f.slowRemove == 0 {
		delete(f.containers, fc.c.ID)
		f.emit(fc.c.ID, events.ActionDestroy)
		f.mu.Unlock()
		f.killIfDue()
		return nil
	}
	// The engine goes on removing whether or not the caller waits.
	fc.removing = true
	fc.c.State.Status = "removing"
	fc.c.State.Running = false
	done := make(chan struct{})
	go func(delay time.Duration) {
		time.Sleep(delay)
		f.mu.Lock()
		delete(f.containers, fc.c.ID)
		f.emit(fc.c.ID, events.ActionDestroy)
		f.mu.Unlock()
		close(done)
	}(f.slowRemove)
	f.mu.Unlock()
	f.killIfDue()
	<-done
	return nil
}

func (f *fakeEngine) ContainerRename(_ context.Context, id, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.killIfDue()
	fc, err := f.find(id)
	if err != nil {
		return err
	}
	if other, err := f.find(name); err == nil && other != fc {
		return errdefs.Conflict(fmt.Errorf("name %s in use", name))
	}
	if strings.TrimPrefix(fc.c.Name, "/") == name {
		// As Docker answers it (seen after a kill right after the rename).
		return errdefs.InvalidParameter(fmt.Errorf("Renaming a container with the same name as its current name"))
	}
	f.record("rename %s %s", strings.TrimPrefix(fc.c.Name, "/"), name)
	fc.c.Name = "/" + name
	return nil
}

func (f *fakeEngine) ContainerKill(_ context.Context, id, signal string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.killIfDue()
	fc, err := f.find(id)
	if err != nil {
		return err
	}
	f.record("kill %s %s", strings.TrimPrefix(fc.c.Name, "/"), signal)
	return nil
}

func (f *fakeEngine) Exec(_ context.Context, id string, argv []string) (dockerctl.ExecResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.killIfDue()
	fc, err := f.find(id)
	if err != nil {
		return dockerctl.ExecResult{}, err
	}
	if !fc.c.State.Running {
		return dockerctl.ExecResult{}, errdefs.Conflict(fmt.Errorf("container %s is not running", id))
	}
	f.record("exec %s %s", strings.TrimPrefix(fc.c.Name, "/"), strings.Join(argv, " "))
	return f.execResult, nil
}

func (f *fakeEngine) ContainerLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}

func (f *fakeEngine) NetworkConnect(_ context.Context, netName, id string, ep *network.EndpointSettings) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.killIfDue()
	fc, err := f.find(id)
	if err != nil {
		return err
	}
	f.record("connect %s %s", strings.TrimPrefix(fc.c.Name, "/"), netName)
	if err := f.connectErr[netName]; err != nil {
		return err
	}
	if _, ok := fc.c.NetworkSettings.Networks[netName]; ok {
		return errdefs.Forbidden(fmt.Errorf("endpoint with name %s already exists in network %s", fc.c.Name, netName))
	}
	fc.c.NetworkSettings.Networks[netName] = f.endpoint(netName, ep)
	if fc.c.State.Running {
		if err := f.publish(fc); err != nil {
			f.brokenConns = append(f.brokenConns, netName)
			return err
		}
	}
	return nil
}

func (f *fakeEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, ok := f.images[ref]
	if !ok {
		return image.InspectResponse{}, errdefs.NotFound(fmt.Errorf("no such image: %s", ref))
	}
	return img, nil
}

func (f *fakeEngine) Events(ctx context.Context, _ events.ListOptions) (<-chan events.Message, <-chan error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan events.Message, 64)
	f.subs = append(f.subs, ch)
	return ch, make(chan error)
}

func (f *fakeEngine) PullImage(_ context.Context, ref string, _ dockerctl.PullProgress) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("pull %s", ref)
	if f.pullErr != nil {
		return f.pullErr
	}
	if _, ok := f.images[ref]; !ok {
		return fmt.Errorf("pulling %s: manifest unknown", ref)
	}
	return nil
}

func (f *fakeEngine) EnsureServiceNetwork(_ context.Context, key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := dockerctl.ServiceNetwork(key)
	f.internal[name] = true
	return name, nil
}

func (f *fakeEngine) MirrorNetwork(_ context.Context, real, owner string, skip ...string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.killIfDue()
	mirror := dockerctl.MirrorName(owner, real)
	f.record("mirror %s %s", real, mirror)
	if err := f.connectErr[mirror]; err != nil {
		return "", err
	}
	if _, ok := f.internal[real]; !ok {
		return "", errdefs.NotFound(fmt.Errorf("network %s not found", real))
	}
	f.internal[mirror] = true
	f.netLabels[mirror] = map[string]string{dockerctl.LabelMirrorOfID: real}
	for id, fc := range f.containers {
		on := fc.c.NetworkSettings.Networks[real]
		if on == nil || !fc.c.State.Running || slices.Contains(skip, id) {
			continue
		}
		if _, ok := fc.c.NetworkSettings.Networks[mirror]; !ok {
			fc.c.NetworkSettings.Networks[mirror] = f.endpoint(mirror, &network.EndpointSettings{Aliases: append([]string{strings.TrimPrefix(fc.c.Name, "/")}, on.Aliases...)})
		}
	}
	return mirror, nil
}

func (f *fakeEngine) PruneMirrors(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.killIfDue()
	var removed []string
	for name, l := range f.netLabels {
		if _, ok := f.internal[l[dockerctl.LabelMirrorOfID]]; ok {
			continue
		}
		for _, fc := range f.containers {
			delete(fc.c.NetworkSettings.Networks, name)
		}
		delete(f.netLabels, name)
		delete(f.internal, name)
		removed = append(removed, name)
	}
	if len(removed) > 0 {
		f.record("prune-mirrors %s", strings.Join(removed, " "))
	}
	return removed, nil
}

// networksOf lists the networks a container is on, sorted.
func (f *fakeEngine) networksOf(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc, err := f.find(name)
	if err != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(fc.c.NetworkSettings.Networks))
}

// state returns a container's status by name, or "missing".
func (f *fakeEngine) state(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.find(name)
	if err != nil {
		return "missing"
	}
	return c.c.State.Status
}

func (f *fakeEngine) imageOf(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.find(name)
	if err != nil {
		return ""
	}
	return c.c.Config.Image
}

func (f *fakeEngine) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeEngine) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.containers)
}

func deepCopyInspect(c container.InspectResponse) container.InspectResponse {
	out := c
	base := *c.ContainerJSONBase
	st := *c.State
	base.State = &st
	hc := *c.HostConfig
	base.HostConfig = &hc
	out.ContainerJSONBase = &base
	cfg := *c.Config
	cfg.Labels = map[string]string{}
	for k, v := range c.Config.Labels {
		cfg.Labels[k] = v
	}
	out.Config = &cfg
	ns := &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{}}
	for k, v := range c.NetworkSettings.Networks {
		ep := *v
		ns.Networks[k] = &ep
	}
	out.NetworkSettings = ns
	return out
}
