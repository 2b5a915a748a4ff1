package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// AppOpts says how StartApp runs the demo app.
type AppOpts struct {
	Name     string        // container name (default a unique bench-web-…)
	Repo     string        // image repository (default testenv's)
	Versions []string      // one image per VERSION; the first one runs
	Warmup   time.Duration // the app's WARMUP (default DefaultWarmup)
	Publish  bool          // publish 8080 on 127.0.0.1:<free port>
}

// App is the demo app as a user runs it before baton: one container with a
// name, on a network of its own, maybe publishing a host port.
type App struct {
	Name     string
	ID       string // the container StartApp ran
	Network  string
	HostPort int               // 0 unless published
	Images   map[string]string // VERSION -> image reference
	Versions []string          // in AppOpts order
}

// Alias is the app's DNS name on its network, beside its container name.
const Alias = "web"

// StartApp builds an image per version, creates a network, runs the first
// version and waits until Docker reports it healthy. Everything, including
// what baton later makes for the service, is removed in t's cleanups.
// benchHealthInterval is the HEALTHCHECK interval of the benchmark's
// images. A deploy waits for the first passing check after warm-up, and
// the benchmark measures deploy time, so it checks often; the test
// suite's images check every testenv.DefaultHealthInterval to spare the
// CPU.
const benchHealthInterval = 500 * time.Millisecond

func StartApp(t testenv.TB, cli *client.Client, opts AppOpts) *App {
	t.Helper()
	if len(opts.Versions) == 0 {
		t.Fatalf("StartApp: no versions")
	}
	if opts.Name == "" {
		opts.Name = testenv.UniqueName("bench-web-")
	}
	if opts.Warmup <= 0 {
		opts.Warmup = DefaultWarmup
	}
	a := &App{Name: opts.Name, Images: map[string]string{}, Versions: opts.Versions}
	a.Network = testenv.Network(t, cli, "", false)
	for _, v := range opts.Versions {
		ref, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{
			Repo: opts.Repo, Version: v, HealthCheck: true, HealthInterval: benchHealthInterval,
			Env: map[string]string{"WARMUP": opts.Warmup.String()},
		})
		a.Images[v] = ref
	}
	// Registered after the network and images, so it runs before their
	// removal: baton's containers hold both.
	CleanupService(t, cli, a.Name)
	if opts.Publish {
		a.HostPort = testenv.FreePort(t)
	}
	a.ID = a.run(t, cli, a.Images[opts.Versions[0]])
	return a
}

// publish is the app's `-p` spec, if it publishes a port.
func (a *App) publish() []string {
	if a.HostPort == 0 {
		return nil
	}
	return []string{"127.0.0.1:" + strconv.Itoa(a.HostPort) + ":8080"}
}

// HostAddr is 127.0.0.1:<published port>.
func (a *App) HostAddr() string { return "127.0.0.1:" + strconv.Itoa(a.HostPort) }

// run starts a container of the app from image, the way StartApp's first one
// was, and waits until it is healthy.
func (a *App) run(t testenv.TB, cli *client.Client, image string) string {
	t.Helper()
	id := testenv.RunDemo(t, cli, testenv.RunOpts{
		Name: a.Name, Image: image, Network: a.Network, Aliases: []string{Alias}, Publish: a.publish(),
	})
	testenv.WaitHealthy(t, cli, id, healthTimeout)
	return id
}

// CleanupService registers a cleanup that removes whatever baton made for the
// service name: the container serving under the name (by then baton's
// replacement), leftovers of an interrupted deploy, and its relay container
// and volume.
func CleanupService(t testenv.TB, cli *client.Client, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		if err := removeService(ctx, cli, name); err != nil {
			t.Errorf("%v", err)
		}
	})
}

func removeService(ctx context.Context, cli *client.Client, name string) error {
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "baton.service="+name))})
	if err != nil {
		return fmt.Errorf("service %s: listing its containers: %w", name, err)
	}
	targets := []string{name, traffic.RelayName(name)}
	for _, c := range list {
		targets = append(targets, c.ID)
	}
	for _, id := range targets {
		err := cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("service %s: removing container %s: %w", name, id, err)
		}
	}
	for _, v := range []string{traffic.RelayName(name), traffic.RelayVolume(name)} {
		if err := cli.VolumeRemove(ctx, v, true); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("service %s: removing volume %s: %w", name, v, err)
		}
	}
	if err := testenv.RemoveServiceNetworks(ctx, cli, dockerctl.ServiceNetwork(name), dockerctl.KernelNetwork(name)); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	return nil
}
