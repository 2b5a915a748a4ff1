package swarmdeploy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/state"
)

// fakeEngine is one service; an update moves it straight to endState.
type fakeEngine struct {
	mu       sync.Mutex // a test may update the service from another goroutine
	svc      swarm.Service
	images   map[string]bool
	updates  []swarm.ServiceSpec
	endState swarm.UpdateState
	tasks    []swarm.Task // what TaskList answers
}

func (f *fakeEngine) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != f.svc.ID && id != f.svc.Spec.Name {
		return swarm.Service{}, nil, errdefs.NotFound(errors.New("service " + id + " not found"))
	}
	return f.svc, nil, nil
}

func (f *fakeEngine) ServiceUpdate(_ context.Context, _ string, v swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v != f.svc.Version {
		return swarm.ServiceUpdateResponse{}, errors.New("update out of sequence")
	}
	f.updates = append(f.updates, spec)
	now := time.Now()
	f.svc.Version.Index++
	f.svc.UpdatedAt = now
	state := f.endState
	if opts.Rollback != "" {
		state = swarm.UpdateStateRollbackCompleted
	}
	if state == swarm.UpdateStateCompleted {
		prev := f.svc.Spec
		f.svc.PreviousSpec = &prev
		f.svc.Spec = spec
	}
	f.svc.UpdateStatus = &swarm.UpdateStatus{State: state, StartedAt: &now, Message: "fake"}
	return swarm.ServiceUpdateResponse{}, nil
}

func (f *fakeEngine) TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tasks, nil
}

func (f *fakeEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if f.images[ref] {
		return image.InspectResponse{ID: "sha256:" + ref}, nil
	}
	return image.InspectResponse{}, errdefs.NotFound(errors.New("no such image " + ref))
}

func (f *fakeEngine) DistributionInspect(context.Context, string, string) (registry.DistributionInspect, error) {
	return registry.DistributionInspect{}, errors.New("no registry here")
}

func newFake(ports ...swarm.PortConfig) *fakeEngine {
	return &fakeEngine{
		svc: swarm.Service{ID: "svc1", Meta: swarm.Meta{Version: swarm.Version{Index: 7}}, Spec: swarm.ServiceSpec{
			Annotations:  swarm.Annotations{Name: "web"},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "shop/web:1"}},
			EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR, Ports: ports},
		}},
		images:   map[string]bool{"shop/web:1": true, "shop/web:2": true},
		endState: swarm.UpdateStateCompleted,
	}
}

func deployer(f *fakeEngine, ipvs bool) *Deployer {
	return &Deployer{Engine: f, IPVSPresent: func() bool { return ipvs }, Poll: time.Millisecond}
}

func TestDeployUpdatesStartFirst(t *testing.T) {
	f := newFake()
	res, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != deploy.OutcomeDeployed || len(f.updates) != 1 {
		t.Fatalf("outcome %s after %d updates", res.Outcome, len(f.updates))
	}
	u := f.updates[0]
	if u.TaskTemplate.ContainerSpec.Image != "shop/web:2" || u.UpdateConfig.Order != swarm.UpdateOrderStartFirst ||
		u.UpdateConfig.FailureAction != swarm.UpdateFailureActionRollback || *u.TaskTemplate.ContainerSpec.StopGracePeriod != DefaultDrain {
		t.Fatalf("update spec: image %s, update config %+v, grace %v", u.TaskTemplate.ContainerSpec.Image, u.UpdateConfig, *u.TaskTemplate.ContainerSpec.StopGracePeriod)
	}
	// The same image again is a no-op.
	res, err = deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2"})
	if err != nil || res.Outcome != deploy.OutcomeUpToDate || len(f.updates) != 1 {
		t.Fatalf("second deploy: %v, outcome %s, %d updates", err, res.Outcome, len(f.updates))
	}
}

func TestMeshWithoutIPVSRefused(t *testing.T) {
	mesh := swarm.PortConfig{TargetPort: 8080, PublishedPort: 18080, PublishMode: swarm.PortConfigPublishModeIngress}
	f := newFake(mesh)
	_, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2"})
	if !errors.Is(err, ErrNoIPVS) || deploy.ExitCode(err) != 2 || len(f.updates) != 0 {
		t.Fatalf("mesh without IPVS: %v (exit %d), %d updates", err, deploy.ExitCode(err), len(f.updates))
	}
	// Positive controls: with IPVS, and with host-mode ports, it deploys.
	if _, err := deployer(newFake(mesh), true).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2"}); err != nil {
		t.Fatalf("mesh with IPVS: %v", err)
	}
	host := mesh
	host.PublishMode = swarm.PortConfigPublishModeHost
	if _, err := deployer(newFake(host), false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2"}); err != nil {
		t.Fatalf("host-mode port without IPVS: %v", err)
	}
}

func TestMissingImageChangesNothing(t *testing.T) {
	f := newFake()
	_, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/nope:1"})
	if deploy.ExitCode(err) != 1 || !strings.Contains(err.Error(), "not on this node") || len(f.updates) != 0 {
		t.Fatalf("missing image: %v (exit %d), %d updates", err, deploy.ExitCode(err), len(f.updates))
	}
}

func TestFailedUpdateExitCodes(t *testing.T) {
	for _, tc := range []struct {
		end  swarm.UpdateState
		exit int
	}{{swarm.UpdateStateRollbackCompleted, 1}, {swarm.UpdateStatePaused, 3}, {swarm.UpdateStateRollbackPaused, 3}} {
		f := newFake()
		f.endState = tc.end
		res, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2"})
		if deploy.ExitCode(err) != tc.exit || res.ExitCode != tc.exit {
			t.Errorf("update ending %s: %v, exit %d, want %d", tc.end, err, deploy.ExitCode(err), tc.exit)
		}
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	f := newFake()
	res, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2", DryRun: true})
	if err != nil || len(f.updates) != 0 || res.Outcome != deploy.OutcomeDryRun {
		t.Fatalf("dry run: %v, %d updates, outcome %s", err, len(f.updates), res.Outcome)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "image: shop/web:1 -> shop/web:2") {
		t.Fatalf("dry run does not show the image change: %q", res.Notes)
	}
}

func TestRollbackToPreviousSpec(t *testing.T) {
	f := newFake()
	if _, err := deployer(f, false).Rollback(t.Context(), Options{Service: "web"}); deploy.ExitCode(err) != 2 {
		t.Fatalf("rollback without a previous spec: %v, want exit 2", err)
	}
	if _, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2"}); err != nil {
		t.Fatal(err)
	}
	res, err := deployer(f, false).Rollback(t.Context(), Options{Service: "web"})
	if err != nil || res.NewImage != "shop/web:1" {
		t.Fatalf("rollback: %v, to %s", err, res.NewImage)
	}
	if _, err := deployer(f, false).Deploy(t.Context(), Options{Service: "nope"}); deploy.ExitCode(err) != 2 {
		t.Fatalf("unknown service: %v, want exit 2", err)
	}
}

// An unattended deploy (Inherit) keeps the update settings baton's last
// deploy chose; a service Swarm's defaults govern gets baton's.
func TestInheritUpdateSettings(t *testing.T) {
	mine := &swarm.UpdateConfig{Parallelism: 3, Delay: 12 * time.Second, Monitor: 9 * time.Second, FailureAction: "pause", Order: swarm.UpdateOrderStartFirst}
	for _, tc := range []struct {
		name string
		cur  *swarm.UpdateConfig
		o    Options
		want swarm.UpdateConfig
	}{
		{"baton's settings kept", mine, Options{Inherit: true}, *mine},
		{"a flag still wins", mine, Options{Inherit: true, Parallelism: 1}, swarm.UpdateConfig{Parallelism: 1, Delay: 12 * time.Second, Monitor: 9 * time.Second, FailureAction: "pause", Order: swarm.UpdateOrderStartFirst}},
		{"not inherited without Inherit", mine, Options{}, *updateConfig(Options{})},
		{"Swarm's stop-first defaults are not baton's", &swarm.UpdateConfig{Parallelism: 5, Order: swarm.UpdateOrderStopFirst}, Options{Inherit: true}, *updateConfig(Options{})},
	} {
		f := newFake()
		f.svc.Spec.UpdateConfig = tc.cur
		if _, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2", Inherit: tc.o.Inherit, Parallelism: tc.o.Parallelism}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := *f.updates[0].UpdateConfig; got != tc.want {
			t.Errorf("%s: update config %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// A deploy waits for another deploy of the service (the state directory's
// lock, across processes), then starts from the service as that one left
// it: no "update out of sequence", no other's update taken for its own.
func TestDeployWaitsForTheServiceLock(t *testing.T) {
	f := newFake()
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := st.Lock(t.Context(), "swarm-web", nil)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{}, 1)
	d := deployer(f, false)
	d.Locks = st
	d.Report = deploy.ReporterFunc(func(e deploy.Event) {
		if strings.Contains(e.Message, "another deploy of service web is running") {
			waiting <- struct{}{}
		}
	})
	type result struct {
		res *deploy.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := d.Deploy(context.Background(), Options{Service: "web", Image: "shop/web:2"})
		done <- result{res, err}
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("deploy ran while another held the lock: %v %v", r.res.Outcome, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("deploy neither waited nor finished")
	}
	// The lock's holder updates the service meanwhile (a watch deploy).
	cur, _, _ := f.ServiceInspectWithRaw(t.Context(), "web", swarm.ServiceInspectOptions{})
	spec, _ := copySpec(cur.Spec)
	spec.Labels = map[string]string{"other": "deploy"}
	if _, err := f.ServiceUpdate(t.Context(), cur.ID, cur.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	unlock()
	r := <-done
	if r.err != nil || r.res.Outcome != deploy.OutcomeDeployed || len(f.updates) != 2 || f.svc.Spec.TaskTemplate.ContainerSpec.Image != "shop/web:2" {
		t.Fatalf("after the lock: %v, outcome %s, %d updates", r.err, r.res.Outcome, len(f.updates))
	}
}

// An update that ends with two tasks meant to run in one slot (a node
// drained mid-update) succeeds, and the result says so; one task per
// slot, with stopped tasks beside them, says nothing.
func TestDeployNotesDoubledSlot(t *testing.T) {
	task := func(id string, slot int, desired swarm.TaskState) swarm.Task {
		return swarm.Task{ID: id, Slot: slot, DesiredState: desired, Status: swarm.TaskStatus{State: desired}}
	}
	cases := []struct {
		name  string
		tasks []swarm.Task
		want  string // in the notes; "" = no such note
	}{
		{"one per slot, old ones shut down", []swarm.Task{
			task("a", 1, swarm.TaskStateRunning), task("b", 1, swarm.TaskStateShutdown),
			task("c", 2, swarm.TaskStateRunning), task("d", 2, swarm.TaskStateShutdown),
		}, ""},
		{"slot 2 doubled", []swarm.Task{
			task("a", 1, swarm.TaskStateRunning), task("c", 2, swarm.TaskStateRunning), task("e", 2, swarm.TaskStateRunning),
			task("d", 2, swarm.TaskStateShutdown), task("f", 3, swarm.TaskStateRunning),
		}, "two tasks in slot 2 "},
		// The restart's replacement waits (desired ready) for the drained
		// task to stop, possibly past the update's end.
		{"slot 3 doubled by a waiting restart", []swarm.Task{
			task("a", 1, swarm.TaskStateRunning), task("c", 2, swarm.TaskStateRunning),
			task("f", 3, swarm.TaskStateRunning), task("g", 3, swarm.TaskStateReady), task("h", 3, swarm.TaskStateShutdown),
		}, "two tasks in slot 3 "},
		{"two slots doubled", []swarm.Task{
			task("a", 1, swarm.TaskStateRunning), task("b", 1, swarm.TaskStateRunning),
			task("c", 2, swarm.TaskStateRunning), task("f", 3, swarm.TaskStateRunning), task("g", 3, swarm.TaskStateReady),
		}, "two tasks in each of slots 1, 3 "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.tasks = tc.tasks
			res, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2"})
			if err != nil || res.Outcome != deploy.OutcomeDeployed {
				t.Fatalf("deploy: %v, outcome %s", err, res.Outcome)
			}
			notes := strings.Join(res.Notes, "\n")
			if tc.want == "" && strings.Contains(notes, "two tasks") || tc.want != "" && !strings.Contains(notes, tc.want) {
				t.Fatalf("notes %q, want %q", notes, tc.want)
			}
		})
	}
}
