package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// RemoveServiceNetworks removes the service networks baton made (label
// baton.role=service-network) whose name contains part, detaching whatever
// is still attached: a test's services are gone by then, and each network
// holds one of the daemon's few address pools.
func RemoveServiceNetworks(ctx context.Context, cli *client.Client, part string) error {
	list, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "baton.role=service-network"))})
	if err != nil {
		return fmt.Errorf("listing service networks: %w", err)
	}
	var errs []error
	for _, n := range list {
		if !strings.Contains(n.Name, part) {
			continue
		}
		full, err := cli.NetworkInspect(ctx, n.ID, network.InspectOptions{})
		if err != nil {
			continue
		}
		for id := range full.Containers {
			_ = cli.NetworkDisconnect(ctx, n.ID, id, true)
		}
		if err := cli.NetworkRemove(ctx, n.ID); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing network %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}
