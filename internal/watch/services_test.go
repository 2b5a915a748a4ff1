package watch

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/opencontainers/go-digest"

	"github.com/baton-sh/baton/internal/unattended"
)

type fakeServices []swarm.Service

func (f fakeServices) ServiceList(context.Context, swarm.ServiceListOptions) ([]swarm.Service, error) {
	return f, nil
}

func service(name, ref string, labels map[string]string) swarm.Service {
	return swarm.Service{Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: ref}}}}
}

// Opted-in services whose tag moved are queued by name, like containers;
// the spec's pinned digest (or this node's image) is what moved means.
func TestWatcherDeploysChangedServices(t *testing.T) {
	on := map[string]string{unattended.LabelEnable: "true"}
	reg := "127.0.0.1:5000/shop/"
	eng := &fakeEngine{
		images: map[string]image.InspectResponse{
			reg + "local:live": {RepoDigests: []string{reg + "local@" + digestA.String()}},
		},
		remote: map[string]digest.Digest{
			reg + "web:live":    digestB, // pinned to A: moved
			reg + "api:live":    digestA, // pinned to A: unchanged
			reg + "local:live":  digestA, // this node's image has A: unchanged
			reg + "worker:live": digestB, // not opted in
		},
	}
	svcs := fakeServices{
		service("web", reg+"web:live@"+digestA.String(), on),
		service("api", reg+"api:live@"+digestA.String(), on),
		service("local", reg+"local:live", on),
		service("worker", reg+"worker:live@"+digestA.String(), map[string]string{unattended.LabelEnable: "false"}),
		service("pinned", reg+"x@"+digestA.String(), on), // no tag to watch
	}
	q := &fakeQueue{statuses: map[string]unattended.Status{}}
	w := newWatcher(eng, q)
	w.Services = svcs
	all := func(string, string) (bool, error) { return true, nil }
	if _, err := w.pass(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	if len(q.jobs) != 1 || q.jobs[0].Target != "web" || q.jobs[0].Trigger != "watch" {
		t.Fatalf("jobs %+v, want one deploy of service web", q.jobs)
	}
	if len(eng.inspects) != 3 {
		t.Fatalf("registry asked about %v, want web, api and local", eng.inspects)
	}
	// Its deploy running: not queued again; without Services, not at all.
	if _, err := w.pass(t.Context(), all); err != nil || len(q.jobs) != 1 {
		t.Fatalf("jobs %d %v", len(q.jobs), err)
	}
	q2 := &fakeQueue{statuses: map[string]unattended.Status{}}
	if _, err := newWatcher(eng, q2).pass(t.Context(), all); err != nil || len(q2.jobs) != 0 {
		t.Fatalf("services watched without Services: %d jobs %v", len(q2.jobs), err)
	}
}
