// Package dockerctl holds everything that talks to the Docker Engine: the
// client, image pulls with the docker CLI's credentials, container cloning,
// networks, events and exec.
package dockerctl

import (
	"context"
	"fmt"

	"github.com/docker/docker/client"
)

// Client wraps the Engine API client. It negotiates the API version with the
// daemon so one binary works against Debian's 20.10 (API 1.41) and current
// engines alike (tested: API 1.56). The client library speaks up to API
// 1.51, above the 1.44 minimum Docker 29.0 shipped with.
type Client struct {
	*client.Client
}

// New connects to the engine named by DOCKER_HOST (or the default socket) and
// negotiates the API version up front, so that version-dependent choices made
// later (see APIVersionAtLeast) see the real one.
func New(ctx context.Context) (*Client, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cannot reach the Docker daemon (is it running, and may this user use its socket?): %w", err)
	}
	c.NegotiateAPIVersion(ctx)
	return &Client{Client: c}, nil
}
