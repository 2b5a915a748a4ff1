package watch

import (
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"

	"github.com/baton-sh/baton/internal/state"
	"github.com/baton-sh/baton/internal/unattended"
)

// A new digest waits for its cooldown, counted from the first time a watch
// saw it (kept across watcher restarts in the state directory); an
// operator's baton.min-age label overrides --min-age, an image's own does
// not.
func TestWatcherCooldown(t *testing.T) {
	dir, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	on := map[string]string{unattended.LabelEnable: "true"}
	long := map[string]string{unattended.LabelEnable: "true", unattended.LabelMinAge: "1h"}
	sneaky := map[string]string{unattended.LabelEnable: "true", unattended.LabelMinAge: "0s"}
	eng := &fakeEngine{
		containers: []container.InspectResponse{
			ctr("c1", "web", "127.0.0.1:5000/shop/web:live", "img1", on),
			ctr("c2", "api", "127.0.0.1:5000/shop/api:live", "img2", long),
			ctr("c3", "evil", "127.0.0.1:5000/shop/evil:live", "img3", sneaky),
		},
		images: map[string]image.InspectResponse{
			"img1": {RepoDigests: []string{"127.0.0.1:5000/shop/web@" + digestA.String()}},
			"img2": {RepoDigests: []string{"127.0.0.1:5000/shop/api@" + digestA.String()}},
			// The image itself carries baton.min-age=0s: an author's label,
			// never a setting.
			"img3": {RepoDigests: []string{"127.0.0.1:5000/shop/evil@" + digestA.String()}, Config: imageConfigWithLabels(map[string]string{unattended.LabelMinAge: "0s"})},
		},
		remote: map[string]digest.Digest{
			"127.0.0.1:5000/shop/web:live":  digestB,
			"127.0.0.1:5000/shop/api:live":  digestB,
			"127.0.0.1:5000/shop/evil:live": digestB,
		},
	}
	q := &fakeQueue{statuses: map[string]unattended.Status{}}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	now := t0
	watcher := func() *Watcher {
		w := newWatcher(eng, q)
		w.MinAge, w.Seen, w.Now = 10*time.Minute, SeenFile{Dir: dir}, func() time.Time { return now }
		return w
	}
	all := func(string, string) (bool, error) { return true, nil }
	targets := func() []string {
		var out []string
		for _, j := range q.jobs {
			out = append(out, j.Target)
		}
		return out
	}

	if _, err := watcher().pass(t.Context(), all); err != nil || len(q.jobs) != 0 {
		t.Fatalf("deployed digests first seen just now: %v %v", targets(), err)
	}
	now = t0.Add(9 * time.Minute)
	if _, err := watcher().pass(t.Context(), all); err != nil || len(q.jobs) != 0 {
		t.Fatalf("deployed before the cooldown: %v %v", targets(), err)
	}
	// A restarted watcher (a new Watcher, same state directory) counts from
	// the first sighting.
	now = t0.Add(11 * time.Minute)
	restarted := watcher()
	if _, err := restarted.pass(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	if got := targets(); len(got) != 2 || got[0] != "web" || got[1] != "evil" {
		t.Fatalf("after 11m deployed %v, want web and evil (the image's 0s label ignored; api's own label says 1h)", got)
	}
	now = t0.Add(61 * time.Minute)
	if _, err := restarted.pass(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	if got := targets(); len(got) != 3 || got[2] != "api" {
		t.Fatalf("after 61m deployed %v, want api too", got)
	}
}

// Without a cooldown nothing is recorded and a new digest deploys at once.
func TestWatcherNoCooldown(t *testing.T) {
	eng := &fakeEngine{
		containers: []container.InspectResponse{ctr("c1", "web", "127.0.0.1:5000/shop/web:live", "img1", map[string]string{unattended.LabelEnable: "true"})},
		images:     map[string]image.InspectResponse{"img1": {RepoDigests: []string{"127.0.0.1:5000/shop/web@" + digestA.String()}}},
		remote:     map[string]digest.Digest{"127.0.0.1:5000/shop/web:live": digestB},
	}
	q := &fakeQueue{statuses: map[string]unattended.Status{}}
	if _, err := newWatcher(eng, q).pass(t.Context(), func(string, string) (bool, error) { return true, nil }); err != nil || len(q.jobs) != 1 {
		t.Fatalf("jobs %d err %v, want one deploy at once", len(q.jobs), err)
	}
}

func imageConfigWithLabels(labels map[string]string) *dockerspec.DockerOCIImageConfig {
	c := &dockerspec.DockerOCIImageConfig{}
	c.Labels = labels
	return c
}
