package healthcheck

import (
	"context"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
)

// Engine is the part of the Docker Engine API that Wait uses. The signatures
// are those of github.com/docker/docker/client, so *client.Client (and
// dockerctl.Client) satisfy it.
type Engine interface {
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
}
