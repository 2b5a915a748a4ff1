package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/testenv"
)

// The tests in this file pin down what baton does with image IDs, which is
// what the containerd image store (Docker 29's default for new installs)
// changes: there an image's ID is the digest of its manifest or index, not
// of its config. Each test first asserts which kind of ID the engine under
// test gives, so the current-engine pass of `make test` (containerd store)
// and the 20.10 pass (graph driver) each prove their case.

// imageID returns the local image ID of ref, after checking it is the kind
// of ID this engine's image store gives for repoTag in the registry.
func (e *env) imageID(ref, repoTag string) string {
	e.t.Helper()
	img, err := e.cli.ImageInspect(e.t.Context(), ref)
	if err != nil {
		e.t.Fatalf("inspect image %s: %v", ref, err)
	}
	digest := e.reg.Digest(e.t, repoTag)
	repo, _, _ := strings.Cut(ref[len(e.reg.Addr())+1:], ":")
	byDigest := e.reg.Addr() + "/" + repo + "@" + digest
	switch store := testenv.ImageStore(e.t, e.cli); store {
	case testenv.ImageStoreContainerd:
		if img.ID != digest {
			e.t.Fatalf("containerd image store: %s has ID %s, want the digest the registry gives for it, %s", ref, img.ID, digest)
		}
	default:
		if img.ID == digest || !slices.Contains(img.RepoDigests, byDigest) {
			e.t.Fatalf("%s image store: %s has ID %s and repo digests %v, want a config digest and %s", store, ref, img.ID, img.RepoDigests, byDigest)
		}
	}
	return img.ID
}

// serves checks the container answers on baton's test network with version v.
func (e *env) serves(name, v string) {
	e.t.Helper()
	assertServes(e.t, "http://"+testenv.ContainerIP(e.t, e.cli, name, e.net)+":8080/", v)
}

// TestNoOpDetectionByImageID: a deploy of the tag the container runs is a
// no-op while the tag names the same image, and a deploy once the tag moves.
func TestNoOpDetectionByImageID(t *testing.T) {
	e := newEnv(t)
	ref := e.version("live", "v1", nil)
	name := testenv.UniqueName("web-")
	id := e.runWeb(name, ref)
	id1 := e.imageID(ref, e.repo+":live")
	if c := e.inspect(name); c.Image != id1 {
		t.Fatalf("%s runs image %s, want %s", name, c.Image, id1)
	}

	r := e.mustDeploy(name)
	if !strings.Contains(r.stdout, "is up to date") || e.inspect(name).ID != id {
		t.Fatalf("a deploy of the unchanged tag was not a no-op: %s", r.stdout)
	}

	e.version("live", "v2", nil) // the tag moves in the registry
	r = e.mustDeploy(name)
	if !strings.Contains(r.stdout, "deployed "+name) {
		t.Fatalf("the moved tag was not deployed: %s", r.stdout)
	}
	c := e.assertSingle(name, ref)
	id2 := e.imageID(ref, e.repo+":live")
	if c.Image != id2 || id2 == id1 {
		t.Fatalf("%s runs image %s, want the moved tag's %s (was %s)", name, c.Image, id2, id1)
	}
	e.serves(name, "v2")

	r = e.mustDeploy(name)
	if !strings.Contains(r.stdout, "is up to date") || e.inspect(name).ID != c.ID {
		t.Fatalf("a second deploy of the moved tag was not a no-op: %s", r.stdout)
	}
}

// TestRollbackToTheExactPreviousImage: after the tag moved and was
// deployed, the previous image is on the host only by its ID; a rollback
// runs exactly that image, not what the tag names now.
func TestRollbackToTheExactPreviousImage(t *testing.T) {
	e := newEnv(t)
	ref := e.version("live", "v1", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, ref)
	id1 := e.imageID(ref, e.repo+":live")
	e.version("live", "v2", nil)
	e.mustDeploy(name)
	id2 := e.imageID(ref, e.repo+":live")
	if c := e.inspect(name); c.Image != id2 || c.Config.Labels["baton.previous-image-id"] != id1 {
		t.Fatalf("after the deploy %s runs %s with previous-image-id %q, want %s and %s", name, c.Image, c.Config.Labels["baton.previous-image-id"], id2, id1)
	}

	r := e.run("rollback", name)
	if r.code != 0 {
		t.Fatalf("rollback exited %d: %s", r.code, r.stderr)
	}
	c := e.inspect(name)
	if c.Image != id1 || !c.State.Running {
		t.Fatalf("after the rollback %s runs image %s (%s), want the exact previous %s", name, c.Image, c.State.Status, id1)
	}
	if got := c.Config.Labels["baton.previous-image-id"]; got != id2 {
		t.Fatalf("after the rollback previous-image-id is %q, want %s", got, id2)
	}
	if img, err := e.cli.ImageInspect(t.Context(), ref); err != nil || img.ID != id2 {
		t.Fatalf("the rollback moved the tag %s: now %s (%v), want %s", ref, img.ID, err, id2)
	}
	e.serves(name, "v1")
}

// TestPullMissingUsesTheLocalImage: with --pull missing a tag on the host is
// used as it is, even when the registry's has moved; a tag not on the host
// is pulled.
func TestPullMissingUsesTheLocalImage(t *testing.T) {
	e := newEnv(t)
	ref := e.version("live", "v1", nil)
	name := testenv.UniqueName("web-")
	id := e.runWeb(name, ref)
	id1 := e.imageID(ref, e.repo+":live")
	e.version("live", "v2", nil) // moves the tag in the registry and untags it here
	// The host's tag still names v1, as after the user's earlier pull.
	if err := e.cli.ImageTag(t.Context(), id1, ref); err != nil {
		t.Fatalf("tag %s as %s: %v", id1, ref, err)
	}

	r := e.mustDeploy("--pull", "missing", name)
	if !strings.Contains(r.stdout, "is up to date") || e.inspect(name).ID != id {
		t.Fatalf("--pull missing with the image on the host was not a no-op: %s", r.stdout)
	}
	if img, err := e.cli.ImageInspect(t.Context(), ref); err != nil || img.ID != id1 {
		t.Fatalf("--pull missing pulled %s: it names %s here now (%v), want %s", ref, img.ID, err, id1)
	}
	e.serves(name, "v1")

	other := e.version("other", "v3", nil) // only in the registry
	r = e.mustDeploy("--pull", "missing", "--image", other, name)
	if !strings.Contains(r.stdout, "deployed "+name) {
		t.Fatalf("--pull missing did not deploy an image missing here: %s", r.stdout)
	}
	c := e.assertSingle(name, other)
	if want := e.imageID(other, e.repo+":other"); c.Image != want {
		t.Fatalf("%s runs image %s, want the pulled %s", name, c.Image, want)
	}
	e.serves(name, "v3")
}
