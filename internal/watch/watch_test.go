package watch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/unattended"
)

const (
	digestA = digest.Digest("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	digestB = digest.Digest("sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
)

type fakeEngine struct {
	mu         sync.Mutex
	containers []container.InspectResponse
	images     map[string]image.InspectResponse
	remote     map[string]digest.Digest // by full reference
	inspects   []string                 // DistributionInspect calls
	auths      []string
}

func (f *fakeEngine) ContainerList(ctx context.Context, o container.ListOptions) ([]container.Summary, error) {
	var out []container.Summary
	for _, c := range f.containers {
		out = append(out, container.Summary{ID: c.ID})
	}
	return out, nil
}

func (f *fakeEngine) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	for _, c := range f.containers {
		if c.ID == id {
			return c, nil
		}
	}
	return container.InspectResponse{}, errors.New("no such container")
}

func (f *fakeEngine) ImageInspect(ctx context.Context, id string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	return f.images[id], nil
}

func (f *fakeEngine) DistributionInspect(ctx context.Context, ref, auth string) (registry.DistributionInspect, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inspects = append(f.inspects, ref)
	f.auths = append(f.auths, auth)
	d, ok := f.remote[ref]
	if !ok {
		return registry.DistributionInspect{}, errors.New("manifest unknown")
	}
	return registry.DistributionInspect{Descriptor: ocispec.Descriptor{Digest: d}}, nil
}

func ctr(id, name, ref, imageID string, labels map[string]string) container.InspectResponse {
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: id, Name: "/" + name, Image: imageID},
		Config:            &container.Config{Image: ref, Labels: labels},
	}
}

type fakeQueue struct {
	jobs     []unattended.Job
	statuses map[string]unattended.Status
}

func (q *fakeQueue) Submit(j unattended.Job) (unattended.Status, error) {
	j.ID = unattended.NewID()
	q.jobs = append(q.jobs, j)
	st := unattended.Status{ID: j.ID, Target: j.Target, State: unattended.StateRunning}
	q.statuses[j.ID] = st
	return st, nil
}
func (q *fakeQueue) Status(id string) (unattended.Status, bool) {
	s, ok := q.statuses[id]
	return s, ok
}
func (q *fakeQueue) Wait(ctx context.Context, id string) (unattended.Status, error) {
	return q.statuses[id], nil
}
func (q *fakeQueue) finish(state string, at time.Time) {
	for id, s := range q.statuses {
		s.State, s.FinishedAt = state, at
		q.statuses[id] = s
	}
}

func newWatcher(eng *fakeEngine, q *fakeQueue) *Watcher {
	return &Watcher{
		Engine: eng, Queue: q, RetryAfter: time.Hour, Who: "watch@test",
		Auth: func(ref string) (string, error) { return "auth-for-" + ref, nil },
		Log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func TestWatcherDeploysOnlyChangedOptedIn(t *testing.T) {
	on := map[string]string{unattended.LabelEnable: "true"}
	eng := &fakeEngine{
		containers: []container.InspectResponse{
			ctr("c1", "web", "127.0.0.1:5000/shop/web:live", "img1", on),
			ctr("c2", "api", "127.0.0.1:5000/shop/api:live", "img2", on),
			ctr("c3", "db", "127.0.0.1:5000/shop/db:live", "img3", nil), // not opted in
			ctr("c4", "pinned", "127.0.0.1:5000/shop/x@"+digestA.String(), "img4", on),
			ctr("c5", "byid", "sha256:1234", "img5", on),
			ctr("c6", "web-baton-abc123", "127.0.0.1:5000/shop/web:live", "img9", map[string]string{unattended.LabelEnable: "true", deploy.LabelService: "web", deploy.LabelDeployID: "abc123"}), // a replacement mid-deploy
		},
		images: map[string]image.InspectResponse{
			"img1": {RepoDigests: []string{"127.0.0.1:5000/shop/web@" + digestA.String()}},
			"img2": {RepoDigests: []string{"127.0.0.1:5000/shop/api@" + digestA.String(), "127.0.0.1:5000/other@" + digestB.String()}},
		},
		remote: map[string]digest.Digest{
			"127.0.0.1:5000/shop/web:live": digestB, // moved
			"127.0.0.1:5000/shop/api:live": digestA, // unchanged
			"127.0.0.1:5000/shop/db:live":  digestB,
		},
	}
	q := &fakeQueue{statuses: map[string]unattended.Status{}}
	w := newWatcher(eng, q)
	all := func(string, string) (bool, error) { return true, nil }
	if _, err := w.pass(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	if len(q.jobs) != 1 || q.jobs[0].Target != "web" || q.jobs[0].Trigger != "watch" || q.jobs[0].Who != "watch@test" || q.jobs[0].Image != "" {
		t.Fatalf("jobs %+v, want one re-pull of web", q.jobs)
	}
	if len(eng.inspects) != 2 || eng.auths[0] != "auth-for-"+eng.inspects[0] {
		t.Fatalf("registry asked about %v with %v; want web and api only, with their credentials", eng.inspects, eng.auths)
	}
	// While web's deploy runs, the same digest is not queued again.
	if _, err := w.pass(t.Context(), all); err != nil || len(q.jobs) != 1 {
		t.Fatalf("jobs %d %v", len(q.jobs), err)
	}
	// A failed digest waits for RetryAfter...
	q.finish("failed", time.Now())
	if _, err := w.pass(t.Context(), all); err != nil || len(q.jobs) != 1 {
		t.Fatalf("failed digest retried at once: %d jobs", len(q.jobs))
	}
	q.finish("failed", time.Now().Add(-2*time.Hour))
	if _, err := w.pass(t.Context(), all); err != nil || len(q.jobs) != 2 {
		t.Fatalf("failed digest not retried after RetryAfter: %d jobs", len(q.jobs))
	}
	// ...but a newer digest is tried at once.
	q.finish("failed", time.Now())
	eng.remote["127.0.0.1:5000/shop/web:live"] = digest.Digest("sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc")
	if _, err := w.pass(t.Context(), all); err != nil || len(q.jobs) != 3 {
		t.Fatalf("new digest not deployed: %d jobs", len(q.jobs))
	}
}

func TestWatcherRegistryError(t *testing.T) {
	eng := &fakeEngine{
		containers: []container.InspectResponse{ctr("c1", "web", "shop/web:1", "img1", map[string]string{unattended.LabelEnable: "true"})},
		images:     map[string]image.InspectResponse{},
		remote:     map[string]digest.Digest{},
	}
	q := &fakeQueue{statuses: map[string]unattended.Status{}}
	w := newWatcher(eng, q)
	changed, _, _, err := w.Changed(t.Context(), eng.containers[0])
	if err == nil || changed {
		t.Fatalf("registry error: changed=%v err=%v", changed, err)
	}
	if eng.inspects[0] != "docker.io/shop/web:1" {
		t.Fatalf("asked about %q", eng.inspects[0])
	}
	if _, err := w.pass(t.Context(), func(string, string) (bool, error) { return true, nil }); err != nil || len(q.jobs) != 0 {
		t.Fatalf("deployed on a registry error: %v %d", err, len(q.jobs))
	}
}

// A Swarm task's container is Swarm's: watch never queues a container
// deploy of it (which would clone it outside Swarm and stop the task); a
// plain container with the same image and labels is the positive control.
func TestWatcherSkipsSwarmTasks(t *testing.T) {
	task := map[string]string{unattended.LabelEnable: "true", deploy.LabelSwarmTaskID: "xyz", deploy.LabelSwarmServiceName: "shop_web"}
	eng := &fakeEngine{
		containers: []container.InspectResponse{
			ctr("c1", "shop_web.1.xyz", "127.0.0.1:5000/shop/web:live", "img1", task),
			ctr("c2", "plain", "127.0.0.1:5000/shop/web:live", "img1", map[string]string{unattended.LabelEnable: "true"}),
		},
		images: map[string]image.InspectResponse{"img1": {RepoDigests: []string{"127.0.0.1:5000/shop/web@" + digestA.String()}}},
		remote: map[string]digest.Digest{"127.0.0.1:5000/shop/web:live": digestB},
	}
	q := &fakeQueue{statuses: map[string]unattended.Status{}}
	if _, err := newWatcher(eng, q).pass(t.Context(), func(string, string) (bool, error) { return true, nil }); err != nil {
		t.Fatal(err)
	}
	if len(q.jobs) != 1 || q.jobs[0].Target != "plain" {
		t.Fatalf("jobs %+v, want the plain container's only", q.jobs)
	}
}

// TestChangedByImageStore: what a container's image says about the
// registry's digest for its tag, on both image stores.
func TestChangedByImageStore(t *testing.T) {
	const ref = "127.0.0.1:5000/shop/web:live"
	cases := []struct {
		name string
		img  image.InspectResponse
		want bool
	}{
		{"graphdriver, pulled at the registry's digest", image.InspectResponse{ID: "sha256:cfg", RepoDigests: []string{"127.0.0.1:5000/shop/web@" + digestA.String()}}, false},
		{"graphdriver, pulled at an older digest", image.InspectResponse{ID: "sha256:cfg", RepoDigests: []string{"127.0.0.1:5000/shop/web@" + digestB.String()}}, true},
		{"same digest, another repository", image.InspectResponse{ID: "sha256:cfg", RepoDigests: []string{"127.0.0.1:5000/shop/api@" + digestA.String()}}, true},
		// containerd store: the tag moved to a local build, so the image
		// the container runs kept its ID (the manifest digest) and lost
		// its repo digests.
		{"containerd, tag moved locally, registry unchanged", image.InspectResponse{ID: digestA.String()}, false},
		{"containerd, tag moved locally, registry moved too", image.InspectResponse{ID: digestB.String()}, true},
		{"no digests at all (built here, never pushed)", image.InspectResponse{ID: "sha256:cfg"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eng := &fakeEngine{
				images: map[string]image.InspectResponse{"img1": tc.img},
				remote: map[string]digest.Digest{ref: digestA},
			}
			w := newWatcher(eng, &fakeQueue{statuses: map[string]unattended.Status{}})
			changed, remote, _, err := w.Changed(t.Context(), ctr("c1", "web", ref, "img1", nil))
			if err != nil {
				t.Fatal(err)
			}
			if changed != tc.want || remote != digestA.String() {
				t.Fatalf("changed %v (remote %s), want %v", changed, remote, tc.want)
			}
		})
	}
}
