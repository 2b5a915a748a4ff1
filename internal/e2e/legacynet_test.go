package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// flatNetworkCommit is the last version that joined every service to one
// network, "baton": the migration test sets a host up with it.
const flatNetworkCommit = "cd3fe724beef471a73c959d10a410657b541077f"

// buildOldBaton builds baton as of commit from the repository's history.
func buildOldBaton(t *testing.T, commit string) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("extracting baton %s from git (the migration test needs the repository's history): %v\n%s", commit[:12], err, out)
	}
	bin := filepath.Join(t.TempDir(), "baton-old")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/baton")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building baton %s: %v\n%s", commit[:12], err, out)
	}
	return bin
}

// onNetwork reports whether container name is attached to network netName.
func (e *env) onNetwork(name, netName string) bool {
	e.t.Helper()
	_, ok := e.inspect(name).NetworkSettings.Networks[netName]
	return ok
}

// TestLegacyNetworkMigrates sets a host up with the previous version (one
// network, "baton", for every service): a service behind an nginx
// container and one behind nginx on the host, both through relays. Under
// load on both, `baton status` moves the first onto its own network and a
// deploy the second, with no failed request and no nginx reload: the app
// containers leave the shared network, and so does the second relay; the
// first relay stays on both, since the nginx container knows it by its
// bare name there. Recreating that relay (as its hardening needs anyway)
// moves it over with one reload, and then the nginx container leaves and
// the shared network goes, unless other tests' services still use it.
func TestLegacyNetworkMigrates(t *testing.T) {
	old := buildOldBaton(t, flatNetworkCommit)
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	// The set-up runs the previous version. Its reload check for an nginx
	// on the host waited until none of the nginx workers it saw before the
	// reload was left, counting every nginx worker on the host (fixed
	// since): with any other test's nginx running beside it, that never
	// happens and its switch rolls back. So the run against the host nginx
	// goes in a PID namespace of its own (isolated), where it sees no
	// worker and skips the check; its reload command asks the test, through
	// a file, to reload that nginx (the namespace cannot signal the
	// master by the PID in its pid file). A failed attempt (which leaves
	// the old container serving) is tried again.
	runOld := func(isolated bool, args ...string) {
		t.Helper()
		var err error
		for attempt := 1; attempt <= 3; attempt++ {
			argv := append([]string{old}, args...)
			if isolated {
				argv = append([]string{"unshare", "--pid", "--fork", "--mount-proc"}, argv...)
			}
			cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), "BATON_STATE_DIR="+e.stateDir)
			var out []byte
			out, err = cmd.CombinedOutput()
			t.Logf("old baton %s (attempt %d):\n%s", strings.Join(args, " "), attempt, out)
			if err == nil {
				return
			}
		}
		t.Fatalf("old baton %s: %v", strings.Join(args, " "), err)
	}

	a := testenv.UniqueName("mig-a-")
	e.runWeb(a, v1)
	ngA := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: e.net, UpstreamFile: "web.conf", InitialServers: []string{a + ":8080"}})
	runOld(false, "deploy", "--image", v2, "--nginx-upstream", ngA.UpstreamFile(), "--nginx-container", ngA.Container(), "--http-probe", "/healthz", a)

	b := testenv.UniqueName("mig-b-")
	e.runWeb(b, v1)
	ngB := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, b, e.net) + ":8080"}})
	runOld(true, "deploy", "--image", v2, "--nginx-upstream", ngB.UpstreamFile(), "--nginx-reload", reloadByRequest(t, ngB.ReloadArgv()), "--http-probe", "/healthz", b)

	// The host as the previous version left it.
	legacy := dockerctl.LegacyNetwork
	relayA, relayB := traffic.RelayName(a), traffic.RelayName(b)
	for _, c := range []string{a, relayA, ngA.Container(), b, relayB} {
		if !e.onNetwork(c, legacy) {
			t.Fatalf("set-up: %s is not on the shared network %s", c, legacy)
		}
	}
	upstreamA := readFile(t, ngA.UpstreamFile())
	if !strings.Contains(upstreamA, "server "+relayA+":8080") {
		t.Fatalf("set-up: upstream file of %s: %q", a, upstreamA)
	}
	workersA := e.nginxWorkers(ngA.Container())

	loadA := startLoad(t, ngA.URL()+"/", 3*time.Minute)
	loadB := startLoad(t, ngB.URL()+"/", 3*time.Minute)
	time.Sleep(time.Second)

	// Service a moves over at a status.
	if r := e.run("status", a); r.code != 0 {
		t.Fatalf("baton status exited %d:\n%s", r.code, r.stderr)
	}
	netA := dockerctl.ServiceNetwork(a)
	for _, c := range []string{a, relayA, ngA.Container()} {
		if !e.onNetwork(c, netA) {
			t.Fatalf("after status: %s is not on %s", c, netA)
		}
	}
	if e.onNetwork(a, legacy) {
		t.Fatalf("after status: %s is still on the shared network", a)
	}
	if !e.onNetwork(relayA, legacy) {
		t.Fatalf("after status: %s left the shared network, where nginx knows it by name", relayA)
	}
	if got := readFile(t, ngA.UpstreamFile()); got != upstreamA {
		t.Fatalf("after status: upstream file of %s changed (a reload): %q", a, got)
	}
	if got := e.nginxWorkers(ngA.Container()); !slices.Equal(got, workersA) {
		t.Fatalf("nginx was reloaded: workers %v, before %v", got, workersA)
	}
	if !e.onNetwork(b, legacy) {
		t.Fatalf("status %s moved %s too", a, b)
	}

	// Service b moves over at a deploy, its relay too (nginx on the host
	// reaches it through its published port). The previous version wrote
	// its reload command into a label, which this one takes from no label:
	// the upgrade passes the flag once, as the README says.
	e.mustDeploy("--image", v1, "--nginx-reload", ngB.ReloadCommand(), b)
	netB := dockerctl.ServiceNetwork(b)
	for _, c := range []string{b, relayB} {
		if !e.onNetwork(c, netB) || e.onNetwork(c, legacy) {
			t.Fatalf("after deploy: %s is on %v, want %s and not %s", c, e.inspect(c).NetworkSettings.Networks, netB, legacy)
		}
	}
	time.Sleep(time.Second)
	resA, resB := loadA.Stop(), loadB.Stop()
	testenv.CheckLoad(t, resA)
	testenv.CheckLoad(t, resB)
	if resB.Versions()["v1"] == 0 {
		t.Fatalf("versions served by %s: %v; the deploy did not move traffic", b, resB.Versions())
	}
	assertServes(t, ngA.URL()+"/", "v2")
	assertServes(t, ngB.URL()+"/", "v1")

	// Recreating a's relay moves it over: the upstream file names it on
	// a's network (one reload), the nginx container leaves the shared
	// network with the last relay there, and the network goes.
	if err := e.cli.ContainerRemove(t.Context(), relayA, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if r := e.run("status", a); r.code != 0 {
		t.Fatalf("baton status exited %d:\n%s", r.code, r.stderr)
	}
	if got := readFile(t, ngA.UpstreamFile()); !strings.Contains(got, "server "+relayA+"."+netA+":8080") {
		t.Fatalf("upstream file of %s does not name its new relay on %s: %q", a, netA, got)
	}
	assertServes(t, ngA.URL()+"/", "v2")
	for _, c := range []string{a, relayA, b, relayB} {
		if e.onNetwork(c, legacy) {
			t.Fatalf("%s is still on the shared network", c)
		}
	}
	n, err := e.cli.NetworkInspect(t.Context(), legacy, network.InspectOptions{})
	if isNotFound(err) {
		return // removed: nothing was left on it
	}
	if err != nil {
		t.Fatal(err)
	}
	var serving []string
	for id := range n.Containers {
		c, err := e.cli.ContainerInspect(t.Context(), id)
		if err != nil {
			continue
		}
		if r := c.Config.Labels["baton.role"]; c.Config.Labels["baton.managed"] == "true" && (r == "relay" || r == "app") {
			serving = append(serving, c.Name)
		}
	}
	if len(serving) == 0 {
		t.Fatalf("the shared network %s stays with no relay or app container on it (containers: %d)", legacy, len(n.Containers))
	}
	t.Logf("the shared network stays: other tests' services use it (%v); the nginx container stays with them: %v", serving, e.onNetwork(ngA.Container(), legacy))
}

// nginxWorkers lists the worker PIDs of an nginx container.
func (e *env) nginxWorkers(name string) []string {
	e.t.Helper()
	top, err := e.cli.ContainerTop(e.t.Context(), name, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	pid, cmd := slices.Index(top.Titles, "PID"), slices.Index(top.Titles, "CMD")
	var out []string
	for _, p := range top.Processes {
		if pid >= 0 && cmd >= 0 && strings.HasPrefix(p[cmd], "nginx: worker process") {
			out = append(out, p[pid])
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		e.t.Fatalf("no nginx workers in %s: %v", name, top.Processes)
	}
	return out
}

// reloadByRequest returns a shell command (the previous version ran its
// reload command with /bin/sh -c) that asks the test to run reload and
// waits until it has: the command creates a request file, a goroutine of
// the test runs reload and removes the file. It works from any PID
// namespace that shares the file system.
func reloadByRequest(t *testing.T, reload []string) string {
	t.Helper()
	req := filepath.Join(t.TempDir(), "reload-request")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := os.Stat(req); err != nil {
				continue
			}
			if out, err := exec.CommandContext(ctx, reload[0], reload[1:]...).CombinedOutput(); err != nil {
				t.Logf("reload for the old baton: %v: %s", err, out)
			}
			_ = os.Remove(req)
		}
	}()
	return "touch " + req + " && while [ -e " + req + " ]; do sleep 0.05; done"
}
