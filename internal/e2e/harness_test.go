// Package e2e runs the baton binary against the real Docker Engine, a real
// registry and real nginx, under load, and checks what users care about:
// requests served, exit codes, and what runs afterwards.
package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// env is one test's world: a registry with the demo app's versions, a
// network, the baton binary and its own state directory.
type env struct {
	t        *testing.T
	cli      *client.Client
	reg      *testenv.Registry
	net      string
	baton    string
	stateDir string
	repo     string
	extraEnv []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cli := testenv.Docker(t)
	e := &env{
		t:        t,
		cli:      cli,
		reg:      testenv.StartRegistry(t, testenv.RegistryOpts{}),
		net:      testenv.Network(t, cli, "", false),
		baton:    testenv.BuildBinary(t, "./cmd/baton"),
		stateDir: t.TempDir(),
		repo:     "shop/" + strings.ToLower(testenv.UniqueName("web-")),
	}
	t.Cleanup(e.removePulledImages)
	return e
}

// removePulledImages removes the images deploys pulled from this test's
// repository, which stay behind by digest once their tags are gone. By ID,
// which only this test's images carry (testenv.DemoImage makes each unique),
// and without pruning parents, which other packages may be building on.
func (e *env) removePulledImages() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(e.t.Context()), time.Minute)
	defer cancel()
	list, err := e.cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return
	}
	for _, img := range list {
		for _, ref := range append(append([]string{}, img.RepoTags...), img.RepoDigests...) {
			if strings.Contains(ref, "/"+e.repo) {
				_, _ = e.cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true})
				break
			}
		}
	}
}

// version builds the demo app reporting version v (with env such as WARMUP
// or MODE), pushes it to the registry as repo:tag and removes the local copy,
// so a deploy really pulls it. It returns the registry reference.
func (e *env) version(tag, v string, appEnv map[string]string) string {
	e.t.Helper()
	return e.versionWith(tag, v, appEnv, testenv.DemoImageOpts{})
}

// versionWith is version with the image's other options (its HEALTHCHECK's
// timing) as opts says; opts' Version, Env and HealthCheck are set here.
func (e *env) versionWith(tag, v string, appEnv map[string]string, opts testenv.DemoImageOpts) string {
	e.t.Helper()
	if appEnv == nil {
		appEnv = map[string]string{}
	}
	if _, ok := appEnv["WARMUP"]; !ok {
		appEnv["WARMUP"] = "1s"
	}
	opts.Version, opts.Env, opts.HealthCheck = v, appEnv, true
	local, _ := testenv.DemoImage(e.t, e.cli, opts)
	ref := e.reg.Push(e.t, e.cli, local, e.repo+":"+tag)
	if _, err := e.cli.ImageRemove(e.t.Context(), ref, image.RemoveOptions{}); err != nil {
		e.t.Fatalf("untagging %s: %v", ref, err)
	}
	return ref
}

// pull pulls ref through the engine, as a user's earlier docker run did.
func (e *env) pull(ref, auth string) {
	e.t.Helper()
	rc, err := e.cli.ImagePull(e.t.Context(), ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		e.t.Fatalf("pull %s: %v", ref, err)
	}
	defer rc.Close()
	if err := testenv.ReadJSONStream(rc); err != nil {
		e.t.Fatalf("pull %s: %v", ref, err)
	}
}

// runWeb starts the "old" container the way a user would.
func (e *env) runWeb(name, ref string, publish ...string) string {
	e.t.Helper()
	if _, err := e.cli.ImageInspect(e.t.Context(), ref); isNotFound(err) {
		e.pull(ref, "")
	}
	id := testenv.RunDemo(e.t, e.cli, testenv.RunOpts{Name: name, Image: ref, Network: e.net, Aliases: []string{"web"}, Publish: publish})
	testenv.WaitHealthy(e.t, e.cli, id, 60*time.Second)
	e.cleanupService(name)
	return id
}

// cleanupService removes whatever baton made for a service: the serving
// container (by then a replacement), leftovers and its relay.
func (e *env) cleanupService(name string) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(e.t.Context()), time.Minute)
		defer cancel()
		list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "baton.service="+name))})
		if err != nil {
			e.t.Logf("cleanup: %v", err)
			return
		}
		for _, c := range list {
			_ = e.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
		_ = e.cli.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
		_ = e.cli.VolumeRemove(ctx, traffic.RelayName(name), true)
		_ = e.cli.VolumeRemove(ctx, traffic.RelayVolume(name), true)
		if err := testenv.RemoveServiceNetworks(ctx, e.cli, dockerctl.ServiceNetwork(name), dockerctl.KernelNetwork(name)); err != nil {
			e.t.Logf("cleanup: %v", err)
		}
	})
}

type batonRun struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// run runs the baton binary and waits for it.
func (e *env) run(args ...string) batonRun {
	e.t.Helper()
	r, err := e.runBaton(args...)
	if err != nil {
		e.t.Fatalf("running baton: %v", err)
	}
	e.t.Logf("baton %s -> exit %d in %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// runBaton runs the baton binary; err is set only if it could not run.
func (e *env) runBaton(args ...string) (batonRun, error) {
	cmd := e.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := batonRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
		err = nil
	}
	return r, err
}

func (e *env) command(args ...string) *exec.Cmd {
	cmd := exec.CommandContext(e.t.Context(), e.baton, args...)
	// Tests keep their upstream files in temporary directories, which the
	// operator (the test) allows like --upstream-dir would.
	cmd.Env = append(os.Environ(), "BATON_STATE_DIR="+e.stateDir, "BATON_UPSTREAM_DIRS="+os.TempDir())
	cmd.Env = append(cmd.Env, e.extraEnv...)
	return cmd
}

// mustDeploy runs baton deploy and fails the test unless it exits 0.
func (e *env) mustDeploy(args ...string) batonRun {
	e.t.Helper()
	r := e.run(append([]string{"deploy"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("deploy exited %d: %s", r.code, r.stderr)
	}
	return r
}

// inspect returns the container named name, or fails.
func (e *env) inspect(name string) container.InspectResponse {
	e.t.Helper()
	c, err := e.cli.ContainerInspect(e.t.Context(), name)
	if err != nil {
		e.t.Fatalf("inspect %s: %v", name, err)
	}
	return c
}

// assertServes checks url answers with version v, several times (over
// fresh connections).
func assertServes(t *testing.T, url, v string) {
	t.Helper()
	for i := 0; i < 5; i++ {
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), v+" ") {
			t.Fatalf("GET %s: %d %q, want version %s", url, resp.StatusCode, body, v)
		}
	}
}

// appContainers lists the app containers baton knows for a service (by its
// label) plus the one named name, so leftovers show up.
func (e *env) appContainers(name string) []container.Summary {
	e.t.Helper()
	list, err := e.cli.ContainerList(e.t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "baton.service="+name), filters.Arg("label", "baton.role=app"))})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// assertSingle checks exactly one app container exists for the service, named
// name, running the given image reference, and no deploy record is left.
func (e *env) assertSingle(name, ref string) container.InspectResponse {
	e.t.Helper()
	c := e.inspect(name)
	if !c.State.Running {
		e.t.Fatalf("%s is %s, want running", name, c.State.Status)
	}
	if c.Config.Image != ref {
		e.t.Fatalf("%s runs %s, want %s", name, c.Config.Image, ref)
	}
	for _, other := range e.appContainers(name) {
		if other.ID != c.ID {
			e.t.Fatalf("leftover container %v (%s) beside %s", other.Names, other.State, name)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(e.engineState(), "deploys", "*.json"))
	if len(matches) > 0 {
		data, _ := os.ReadFile(matches[0])
		e.t.Fatalf("deploy record left behind: %s", data)
	}
	return c
}

// recordPhase is the phase of the deploy record an interrupted deploy left
// ("" when there is none).
func (e *env) recordPhase() string {
	e.t.Helper()
	matches, _ := filepath.Glob(filepath.Join(e.engineState(), "deploys", "*.json"))
	if len(matches) == 0 {
		return ""
	}
	data, err := os.ReadFile(matches[0])
	if err != nil {
		e.t.Fatal(err)
	}
	var rec struct {
		Phase string `json:"phase"`
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		e.t.Fatalf("deploy record %s: %v", matches[0], err)
	}
	return rec.Phase
}

// assertUntouched checks a failed deploy left the old container as it was.
func (e *env) assertUntouched(name, id, url, v string) {
	e.t.Helper()
	c := e.inspect(name)
	if c.ID != id || !c.State.Running {
		e.t.Fatalf("%s is now %s (%s), want the old container %s running", name, c.ID[:12], c.State.Status, id[:12])
	}
	for _, other := range e.appContainers(name) {
		if other.ID != id {
			e.t.Fatalf("leftover container %v after a failed deploy", other.Names)
		}
	}
	if url != "" {
		assertServes(e.t, url, v)
	}
}

// loadClients is startLoad's concurrency: at most this many of its
// requests are in flight at any moment.
const loadClients = 8

// loadRate is each load client's requests per second. 8 × 25 keeps requests
// in flight through every switch and drain while leaving the 2-core test
// machine to the deploys: at 8 × 100 the load took most of the CPU, the
// e2e package ran over 50 minutes per engine, and the saturated case is
// the benchmark's job (baton-bench -rate 0), not the suite's.
const loadRate = 25

// startLoad starts steady keep-alive GET/POST load on url for at most max.
func startLoad(t *testing.T, url string, max time.Duration) *loadgen.Load {
	t.Helper()
	l, err := loadgen.Start(t.Context(), loadgen.Config{URL: url, Clients: loadClients, Duration: max, Rate: loadRate})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// jsonEvents runs baton with --json and calls onEvent for every progress
// event as it arrives; onEvent returns true to SIGKILL baton right there.
func (e *env) runUntil(onEvent func(phase, msg string) bool, args ...string) (killed bool, code int) {
	e.t.Helper()
	cmd := e.command(args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var once sync.Once
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var ev struct {
			Type    string `json:"type"`
			Phase   string `json:"phase"`
			Message string `json:"message"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Type != "event" {
			continue
		}
		if onEvent(ev.Phase, ev.Message) {
			once.Do(func() {
				killed = true
				_ = cmd.Process.Kill()
			})
		}
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	e.t.Logf("baton %s: killed=%v exit=%d stderr: %s", strings.Join(args, " "), killed, code, stderr.String())
	return killed, code
}

func isNotFound(err error) bool { return errdefs.IsNotFound(err) }

// watchDies records the engine's die events of the service's app
// containers from now on; the returned func stops and returns their times
// (the engine's clock, which is the test's: one host), oldest first.
func (e *env) watchDies(name string) func() []time.Time {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.t.Context())
	now := time.Now()
	msgs, errs := e.cli.Events(ctx, events.ListOptions{
		Since: fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond()),
		Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("event", string(events.ActionDie)),
			filters.Arg("label", "baton.service="+name),
			filters.Arg("label", "baton.role=app"),
		),
	})
	var mu sync.Mutex
	var times []time.Time
	var streamErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-msgs:
				mu.Lock()
				times = append(times, time.Unix(0, m.TimeNano))
				mu.Unlock()
			case err := <-errs:
				if ctx.Err() == nil {
					streamErr = err
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() []time.Time {
		e.t.Helper()
		time.Sleep(500 * time.Millisecond) // an event the engine sent as the deploy ended
		cancel()
		<-done
		if streamErr != nil {
			e.t.Fatalf("watching %s's die events: %v", name, streamErr)
		}
		mu.Lock()
		defer mu.Unlock()
		return times
	}
}

// containerFile reads one regular file from a container's filesystem (as
// docker cp does, so an image without a shell will do).
func (e *env) containerFile(ctr, path string) (string, error) {
	rc, _, err := e.cli.CopyFromContainer(e.t.Context(), ctr, path)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(tr)
	return string(b), err
}
