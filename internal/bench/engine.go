package bench

import (
	"context"
	"fmt"

	"github.com/docker/docker/client"
)

// Engine names the Docker Engine a report was measured on, so reports from
// two engines can be told apart and printed side by side.
type Engine struct {
	Version string `json:"version"`     // the daemon's version, e.g. 20.10.24+dfsg1
	API     string `json:"api_version"` // its highest API version
	// Store is the image store: the graph driver's name, or "containerd"
	// for the containerd image store (Docker 29's default for new installs).
	Store string `json:"image_store"`
}

// String is the engine as a table heading: version, API and image store.
func (e Engine) String() string {
	if e.Version == "" {
		return "unknown engine"
	}
	return fmt.Sprintf("Docker %s (API %s, %s)", e.Version, e.API, e.Store)
}

// snapshotterDriverType is what `docker info` reports as the driver-type of
// a graph driver backed by containerd's snapshotters.
const snapshotterDriverType = "io.containerd.snapshotter.v1"

// engineOf asks the engine DOCKER_HOST names what it is.
func engineOf(ctx context.Context) (Engine, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return Engine{}, fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	return engineOfClient(ctx, cli)
}

// engineOfClient asks the engine cli talks to what it is.
func engineOfClient(ctx context.Context, cli *client.Client) (Engine, error) {
	v, err := cli.ServerVersion(ctx)
	if err != nil {
		return Engine{}, fmt.Errorf("docker version: %w", err)
	}
	info, err := cli.Info(ctx)
	if err != nil {
		return Engine{}, fmt.Errorf("docker info: %w", err)
	}
	e := Engine{Version: v.Version, API: v.APIVersion, Store: info.Driver}
	for _, kv := range info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == snapshotterDriverType {
			e.Store = "containerd image store"
		}
	}
	return e, nil
}
