package deploy

import (
	"context"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/baton-sh/baton/dockerctl"
)

// Engine is what a deploy needs from the Docker Engine. *dockerctl.Client
// satisfies it; unit tests use a stateful fake. The method shapes are the
// Docker client's own so the real client needs no adapter.
type Engine interface {
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerRename(ctx context.Context, containerID, newContainerName string) error
	ContainerKill(ctx context.Context, containerID, signal string) error
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
	NetworkConnect(ctx context.Context, networkID, containerID string, config *network.EndpointSettings) error
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)

	// Exec runs argv in a running container and waits for it (--pre-switch);
	// a non-zero exit is in the result, with the output's tail.
	Exec(ctx context.Context, containerID string, argv []string) (dockerctl.ExecResult, error)
	// PullImage pulls with the docker CLI's credentials, showing progress.
	PullImage(ctx context.Context, ref string, p dockerctl.PullProgress) error
	// EnsureServiceNetwork returns the name of the service's own internal
	// network, creating the network if needed.
	EnsureServiceNetwork(ctx context.Context, serviceKey string) (string, error)
	// MirrorNetwork makes or updates service owner's internal copy of
	// network real (name or ID), with its running containers but the
	// service's own (skip) attached, and returns its name.
	MirrorNetwork(ctx context.Context, real, owner string, skip ...string) (string, error)
	// PruneMirrors removes the copies of networks that are gone.
	PruneMirrors(ctx context.Context) ([]string, error)
}
