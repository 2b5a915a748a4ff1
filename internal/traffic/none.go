package traffic

import (
	"context"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
)

// None is the mode without proxy control: traffic reaches the service through
// its published port, which the new container takes over when the old one
// stops. Requests that arrive between the old container closing its listener
// and the new one publishing the port fail unless the client retries.
type None struct{}

func (None) Mode() string                                  { return "none" }
func (None) Ensure(context.Context, deploy.Endpoint) error { return nil }
func (None) Describe(context.Context) (string, error) {
	return "published port, handed over when the old container stops", nil
}
func (None) Switch(context.Context, deploy.Endpoint, deploy.Endpoint) error { return nil }
func (None) Drain(context.Context, deploy.Endpoint, time.Duration) (deploy.DrainReport, error) {
	return deploy.DrainReport{}, nil
}
func (None) Finish(context.Context, deploy.Endpoint, deploy.Endpoint) error { return nil }
