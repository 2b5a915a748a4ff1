package dockerctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/client"
)

// HostsFileEngine is the Endpoint name of an engine a hosts file gives by
// URL rather than by context.
const HostsFileEngine = "hosts-file"

// NewAt connects to the engine at host, a unix:// or tcp:// URL given for
// one host of a rollout (a hosts file's docker-host=), and negotiates the
// API version as New does. Engines reached over ssh or with TLS are named by
// a docker context instead.
func NewAt(ctx context.Context, host string) (*Client, error) {
	if !strings.HasPrefix(host, "unix://") && !strings.HasPrefix(host, "tcp://") {
		return nil, fmt.Errorf("engine %s: want a unix:// or tcp:// URL (name an ssh:// or TLS engine by its docker context)", host)
	}
	c, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", host, err)
	}
	if _, err := c.Ping(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cannot reach the Docker engine at %s: %w", host, err)
	}
	c.NegotiateAPIVersion(ctx)
	return &Client{Client: c, Endpoint: Endpoint{Name: HostsFileEngine, Host: host, Local: isLocalHost(host)}}, nil
}
