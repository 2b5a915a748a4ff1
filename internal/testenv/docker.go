package testenv

import (
	"context"
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
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			return ImageStoreContainerd
		}
	}
	return info.Driver
}
