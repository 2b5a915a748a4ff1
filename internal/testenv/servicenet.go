package testenv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/dockerctl"
)

// RemoveServiceNetworks removes the networks baton made for services (label
// baton.role=service-network or kernel-network) whose name contains one of
// parts, detaching whatever is still attached: a test's services are gone
// by then, and each network holds one of the daemon's few address pools.
func RemoveServiceNetworks(ctx context.Context, cli *client.Client, parts ...string) error {
	var list []network.Summary
	for _, role := range []string{dockerctl.RoleServiceNetwork, dockerctl.RoleKernelNetwork} {
		l, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "baton.role="+role))})
		if err != nil {
			return fmt.Errorf("listing service networks: %w", err)
		}
		list = append(list, l...)
	}
	var errs []error
	for _, n := range list {
		if !slices.ContainsFunc(parts, func(p string) bool { return strings.Contains(n.Name, p) }) {
			continue
		}
		if err := detachAndRemoveNetwork(ctx, cli, n.ID); err != nil {
			errs = append(errs, fmt.Errorf("removing network %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// detachAndRemoveNetwork detaches what is attached to network id (a name
// or an ID) and removes it; a network already gone is no error.
// An endpoint of a container removed a moment ago can outlive the remove
// call briefly (seen on Docker 20.10: "has active endpoints" right after a
// test's cleanup removed the last container), so a refusal is tried again,
// with what is attached looked up anew, for up to 15 s.
func detachAndRemoveNetwork(ctx context.Context, cli *client.Client, id string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		full, err := cli.NetworkInspect(ctx, id, network.InspectOptions{})
		if errdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for c := range full.Containers {
			_ = cli.NetworkDisconnect(ctx, id, c, true)
		}
		err = cli.NetworkRemove(ctx, id)
		if err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		if !strings.Contains(err.Error(), "active endpoints") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
