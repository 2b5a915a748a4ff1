// Package dockerctl holds everything that talks to the Docker Engine: the
// client, image pulls with the docker CLI's credentials, container cloning,
// networks, events and exec.
package dockerctl

import (
	"context"

	"github.com/docker/docker/client"
)

// Client wraps the Engine API client. It negotiates the API version with the
// daemon so one binary works against Debian's 20.10 (API 1.41) and current
// engines alike (tested: API 1.56). The client library speaks up to API
// 1.51, above the 1.44 minimum Docker 29.0 shipped with.
type Client struct {
	*client.Client
	// Endpoint is the engine this client talks to, for messages and for
	// whether its containers' addresses are reachable from here.
	Endpoint Endpoint
}

// New connects to the engine the docker CLI would talk to (see
// ResolveEndpoint: DOCKER_HOST, DOCKER_CONTEXT, `docker context use`, the
// default socket).
func New(ctx context.Context) (*Client, error) {
	ep, err := ResolveEndpoint("")
	if err != nil {
		return nil, err
	}
	return NewFromEndpoint(ctx, ep)
}
