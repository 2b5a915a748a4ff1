package testenv_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/testenv"
)

// pull pulls ref with the given X-Registry-Auth value and returns the error
// the engine reported, in the call or inside the progress stream.
func pull(t *testing.T, cli *client.Client, ref, auth string) error {
	t.Helper()
	rc, err := cli.ImagePull(t.Context(), ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer rc.Close()
	return testenv.ReadJSONStream(rc)
}

func TestRegistryAuthPushPull(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOpts{Auth: true})
	if !strings.HasPrefix(reg.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", reg.Addr())
	}
	local, id := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "reg-v1"})
	pushed := reg.Push(t, cli, local, "baton/demo:v1")
	if want := reg.Addr() + "/baton/demo:v1"; pushed != want {
		t.Fatalf("Push returned %q, want %q", pushed, want)
	}

	// Remove every local tag so the image itself is gone and must come back
	// from the registry.
	for _, ref := range []string{pushed, local} {
		if _, err := cli.ImageRemove(t.Context(), ref, image.RemoveOptions{Force: true}); err != nil {
			t.Fatalf("remove %s: %v", ref, err)
		}
	}
	if _, err := cli.ImageInspect(t.Context(), id); err == nil {
		t.Fatalf("image %s still present after removing its tags", id)
	}

	noAuth, err := registry.EncodeAuthConfig(registry.AuthConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pull(t, cli, pushed, noAuth); err == nil || !strings.Contains(err.Error(), "no basic auth credentials") {
		t.Fatalf("pull without credentials: got error %v, want the registry to demand auth", err)
	}
	if err := pull(t, cli, pushed, reg.AuthHeader()); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	got, err := cli.ImageInspect(t.Context(), pushed)
	if err != nil {
		t.Fatalf("inspect pulled image: %v", err)
	}
	if got.ID != id {
		t.Fatalf("pulled image ID %s, pushed %s", got.ID, id)
	}

	// The DOCKER_CONFIG dir holds the same credentials the docker CLI way.
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, err := os.ReadFile(filepath.Join(reg.DockerConfigDir(t), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	dec, err := base64.StdEncoding.DecodeString(cfg.Auths[reg.Addr()].Auth)
	if err != nil {
		t.Fatalf("config.json auth: %v", err)
	}
	if want := reg.Auth().Username + ":" + reg.Auth().Password; string(dec) != want {
		t.Fatalf("config.json auth = %q, want %q", dec, want)
	}

	// Down is down, and Start brings the same registry, contents and all, back.
	if err := reg.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := cli.ImageRemove(t.Context(), pushed, image.RemoveOptions{Force: true}); err != nil {
		t.Fatalf("remove %s: %v", pushed, err)
	}
	if err := pull(t, cli, pushed, reg.AuthHeader()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("pull from a stopped registry: got error %v, want connection refused", err)
	}
	reg.Start(t)
	if err := pull(t, cli, pushed, reg.AuthHeader()); err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
}
