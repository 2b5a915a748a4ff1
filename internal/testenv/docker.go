package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

var docker struct {
	mu  sync.Mutex
	cli *client.Client
}

// Docker returns the process's Engine API client, its version negotiated.
// With -short it skips the test; otherwise an unreachable daemon fails it,
// because CI provides one and a silent skip would hide that it did not.
func Docker(t TB) *client.Client {
	t.Helper()
	if tt, ok := t.(testing.TB); ok && testing.Short() {
		tt.Skip("integration test: needs the Docker daemon (skipped with -short)")
	}
	docker.mu.Lock()
	defer docker.mu.Unlock()
	if docker.cli != nil {
		return docker.cli
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		closeErr := cli.Close()
		if _, ok := t.(testing.TB); ok {
			t.Fatalf("integration tests need the Docker daemon; run `make test`, which starts it (ping: %v, close: %v)", err, closeErr)
		}
		t.Fatalf("the Docker daemon is unreachable; start it (ping: %v, close: %v)", err, closeErr)
	}
	cli.NegotiateAPIVersion(ctx)
	docker.cli = cli
	return cli
}

// ImageStoreContainerd is what ImageStore returns for the containerd image
// store, where an image's ID is the digest of its manifest (or index)
// rather than of its config.
const ImageStoreContainerd = "containerd"

// ImageStore says which image store the engine uses: ImageStoreContainerd,
// or the name of its graph driver (overlay2, fuse-overlayfs, ...).
func ImageStore(t TB, cli *client.Client) string {
	t.Helper()
	info, err := cli.Info(t.Context())
	if err != nil {
		t.Fatalf("docker info: %v", err)
	}
	got := info.Driver
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			got = ImageStoreContainerd
		}
	}
	// The tests that depend on the store follow whichever one the engine
	// has, so an engine that quietly came up on the other store would pass
	// them while proving nothing about the store the run was meant for.
	if err := checkImageStore(got, os.Getenv(ImageStoreEnv)); err != nil {
		t.Fatalf("%v", err)
	}
	return got
}

// ImageStoreEnv names the image store a test run expects its engine to
// have: "containerd" or "graphdriver". scripts/docker-current run sets it
// to the store it started the engine with; unset, any store is taken.
const ImageStoreEnv = "BATON_TEST_IMAGE_STORE"

// checkImageStore compares the store an engine has (ImageStore's answer)
// with the one the run expects (ImageStoreEnv's value).
func checkImageStore(got, want string) error {
	switch {
	case want == "":
		return nil
	case want == ImageStoreContainerd && got == ImageStoreContainerd,
		want == "graphdriver" && got != ImageStoreContainerd:
		return nil
	case want != ImageStoreContainerd && want != "graphdriver":
		return fmt.Errorf("%s=%q: want containerd or graphdriver", ImageStoreEnv, want)
	default:
		return fmt.Errorf("the engine uses the %s image store, but this run was started for the %s store (%s)", got, want, ImageStoreEnv)
	}
}
