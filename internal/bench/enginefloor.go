package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/testenv"
)

// EngineFloor is what the engine alone takes for what every deploy asks of
// it, measured beside the deploys, under the same load, with no baton: a
// container of the app's image, on the networks the serving container is
// on (each endpoint costs Docker time at start and stop) but publishing no
// port (the serving one holds it), started until the app answers its
// health check (Docker's start plus the app's warm-up), and stopped. A deploy's
// time to traffic cannot be shorter than StartToReady, nor its return than
// that plus Stop; what is above them is baton's own (and the image's
// HEALTHCHECK interval, which baton waits for when the image has one).
type EngineFloor struct {
	Runs         int           `json:"runs"`
	Networks     int           `json:"networks"`
	Start        time.Duration `json:"start_ns"`          // median: the start call
	StartToReady time.Duration `json:"start_to_ready_ns"` // median: from the start call to the first 200 of /healthz
	Stop         time.Duration `json:"stop_ns"`           // median: the stop call of a container that exits on SIGTERM
}

// engineFloorRuns is how many containers the floor starts and stops.
const engineFloorRuns = 3

// measureEngineFloor starts and stops engineFloorRuns containers of image
// on like's networks (netName first, where it is polled for readiness
// every 10 ms from here).
func measureEngineFloor(t testenv.TB, cli *client.Client, image, netName, like string) (EngineFloor, error) {
	t.Helper()
	c, err := cli.ContainerInspect(t.Context(), like)
	if err != nil {
		return EngineFloor{}, fmt.Errorf("engine floor: inspecting %s: %w", like, err)
	}
	nets := []string{netName}
	for n := range c.NetworkSettings.Networks {
		if n != netName {
			nets = append(nets, n)
		}
	}
	var start, ready, stop []time.Duration
	for range engineFloorRuns {
		s, r, p, err := engineFloorOnce(t, cli, image, nets)
		if err != nil {
			return EngineFloor{}, err
		}
		start, ready, stop = append(start, s), append(ready, r), append(stop, p)
	}
	return EngineFloor{Runs: engineFloorRuns, Networks: len(nets), Start: medianOf(start), StartToReady: medianOf(ready), Stop: medianOf(stop)}, nil
}

func engineFloorOnce(t testenv.TB, cli *client.Client, image string, nets []string) (start, ready, stop time.Duration, err error) {
	netName := nets[0]
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	name := testenv.UniqueName("bench-floor-")
	created, err := cli.ContainerCreate(ctx,
		&container.Config{Image: image, Labels: map[string]string{testenv.Label: "1"}},
		&container.HostConfig{NetworkMode: container.NetworkMode(netName)},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netName: {}}}, nil, name)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("engine floor: creating %s: %w", name, err)
	}
	defer func() {
		_ = cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
	}()
	for _, n := range nets[1:] {
		if err := cli.NetworkConnect(ctx, n, created.ID, nil); err != nil {
			return 0, 0, 0, fmt.Errorf("engine floor: connecting %s to %s: %w", name, n, err)
		}
	}
	t0 := time.Now()
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return 0, 0, 0, fmt.Errorf("engine floor: starting %s: %w", name, err)
	}
	start = time.Since(t0)
	c, err := cli.ContainerInspect(ctx, created.ID)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("engine floor: inspecting %s: %w", name, err)
	}
	ep := c.NetworkSettings.Networks[netName]
	if ep == nil || ep.IPAddress == "" {
		return 0, 0, 0, fmt.Errorf("engine floor: %s has no address on %s", name, netName)
	}
	url := "http://" + net.JoinHostPort(ep.IPAddress, "8080") + "/healthz"
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-ctx.Done():
			return 0, 0, 0, fmt.Errorf("engine floor: %s never answered %s: %w", name, url, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	ready = time.Since(t0)
	t1 := time.Now()
	if err := cli.ContainerStop(ctx, created.ID, container.StopOptions{}); err != nil {
		return 0, 0, 0, fmt.Errorf("engine floor: stopping %s: %w", name, err)
	}
	return start, ready, time.Since(t1), nil
}

func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
