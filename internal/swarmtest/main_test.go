// Package swarmtest tests baton's Swarm service deploys against a swarm of
// its own: TestMain starts a current Docker Engine in a network namespace of
// its own (scripts/docker-current, named baton-swarm), runs the tests inside
// that namespace, makes the engine a single-node swarm, and leaves the swarm
// and stops the engine at the end whatever happened. The machine's daemon is
// never made a swarm manager. The Makefile keeps this package out of
// DOCKER_PKGS, so `make test` runs it once (in `go test ./...`), not once per
// engine: it brings its own.
package swarmtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/testenv"
)

// insideEnv marks the test binary re-run inside the engine's namespace.
const insideEnv = "BATON_SWARMTEST_INSIDE"

// engineName names the namespace, data root and socket of the engine;
// BATON_SWARMTEST_ENGINE overrides it, so a developer's run beside make
// test's (which uses baton-swarm) gets an engine of its own (give it its own
// BATON_DOCKER_CURRENT_POOL too).
func engineName() string {
	if n := os.Getenv("BATON_SWARMTEST_ENGINE"); n != "" {
		return n
	}
	return "baton-swarm"
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test here skips with -short
	}
	if os.Getenv(insideEnv) == "" {
		os.Exit(reRunInEngine())
	}
	cleanup, err := initSwarm()
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarmtest:", err)
		if cleanup != nil {
			cleanup()
		}
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// reRunInEngine runs this test binary again with the same flags inside the
// network namespace of an engine of its own; docker-current run stops it
// (and so the swarm) when the tests end, also on failure.
func reRunInEngine() int {
	root, err := testenv.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarmtest:", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarmtest:", err)
		return 1
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "docker-current"), append([]string{"run", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), "BATON_DOCKER_CURRENT_NAME="+engineName(), insideEnv+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "swarmtest: docker-current:", err)
		return 1
	}
	return 0
}

// initSwarm makes the engine a single-node swarm; the cleanup leaves it.
func initSwarm() (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	leave := func() {
		lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer lcancel()
		if err := cli.SwarmLeave(lctx, true); err != nil {
			fmt.Fprintln(os.Stderr, "swarmtest: leaving the swarm:", err)
		}
		_ = cli.Close()
	}
	if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1"}); err != nil {
		return leave, fmt.Errorf("docker swarm init: %w", err)
	}
	return leave, nil
}
