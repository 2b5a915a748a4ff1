package e2e

import (
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/testenv"
)

// TestZeroDowntimeRelayHostNginx is the main job: a container publishing a
// host port, nginx on the host in front of it, steady keep-alive GET/POST
// load, and consecutive deploys through baton's relay. Zero requests may fail.
func TestZeroDowntimeRelayHostNginx(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	hostPort := testenv.FreePort(t)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	published := "http://127.0.0.1:" + itoa(hostPort) + "/"
	// nginx as the user had it before baton: proxying to the published port.
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{"127.0.0.1:" + itoa(hostPort)}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz"}
	// The first deploy with nginx flags sets up the relay and points nginx at
	// it: the one nginx reload baton ever does for this service. Later
	// deploys need none; those run under load.
	e.mustDeploy(append(append([]string{"--image", v2}, flags...), name)...)
	if got := readFile(t, ng.UpstreamFile()); !strings.Contains(got, "server 127.0.0.1:") {
		t.Fatalf("upstream file does not name the relay: %q", got)
	}
	load := startLoad(t, ng.URL()+"/", 3*time.Minute)
	for i, ref := range []string{v1, v2, v1, v2} {
		r := e.mustDeploy(append(append([]string{"--image", ref}, flags...), name)...)
		if !strings.Contains(r.stdout, "deployed "+name) || !strings.Contains(r.stdout, "traffic: relay") {
			t.Fatalf("deploy %d: stdout %q", i, r.stdout)
		}
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: the deploys did not move traffic", res.Versions())
	}
	e.assertSingle(name, v2)
	assertServes(t, ng.URL()+"/", "v2")
	assertServes(t, published, "v2") // the published port went to the new container too
}

// TestZeroDowntimeRelayContainerNginx: nginx runs in a container on the
// app's network and is told to reload by HUP; baton attaches it to its
// network so it reaches the relay.
func TestZeroDowntimeRelayContainerNginx(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: e.net, UpstreamFile: "web.conf", InitialServers: []string{name + ":8080"}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz"}
	e.mustDeploy(append(append([]string{"--image", v2}, flags...), name)...) // set-up: relay, one HUP
	load := startLoad(t, ng.URL()+"/", 2*time.Minute)
	e.mustDeploy("--image", v1, name)
	// The settings are recorded on the container: later deploys (from cron,
	// say) need no flags.
	e.mustDeploy("--image", v2, name)
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v", res.Versions())
	}
	e.assertSingle(name, v2)
	assertServes(t, ng.URL()+"/", "v2")
}

// TestNginxReloadMode moves traffic by rewriting the upstream file and
// reloading nginx, without the relay. nginx closes idle client keep-alive
// connections at a reload, so this mode can lose a request a client sends at
// that instant; the benchmark measures how often. Here: the deploys succeed,
// traffic moves, and failures stay rare.
func TestNginxReloadMode(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, name, e.net) + ":8080"}})
	load := startLoad(t, ng.URL()+"/", 2*time.Minute)
	e.mustDeploy("--image", v2, "--relay=false", "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", name)
	e.mustDeploy("--image", v1, name)
	res := load.Stop()
	t.Logf("reload mode: %s", res.Summary())
	if res.Failed()*200 > res.Total() {
		t.Fatalf("%d of %d requests failed in reload mode; expected at most a few at each reload", res.Failed(), res.Total())
	}
	if res.Versions()["v2"] == 0 {
		t.Fatalf("versions %v", res.Versions())
	}
	c := e.assertSingle(name, v1)
	if c.Config.Labels["baton.relay"] != "false" {
		t.Fatalf("relay=false not recorded: %v", c.Config.Labels)
	}
	assertServes(t, ng.URL()+"/", "v1")

	// After a host reboot the container may have another address than the
	// upstream file names; baton status (run at boot) points nginx at it
	// again. Simulated with an address nothing answers on.
	ng.SetUpstream(t, "127.0.0.1:"+itoa(testenv.FreePort(t)))
	if code := httpStatus(ng.URL() + "/"); code/100 == 2 {
		t.Fatalf("nginx still answers %d through a stale upstream", code)
	}
	if r := e.run("status", name); r.code != 0 {
		t.Fatalf("baton status exited %d:\n%s", r.code, r.stderr)
	}
	assertServes(t, ng.URL()+"/", "v1")
	if got := readFile(t, ng.UpstreamFile()); !strings.Contains(got, testenv.ContainerIP(t, e.cli, name, dockerctl.ServiceNetwork(name))+":8080") {
		t.Fatalf("upstream file after status: %q", got)
	}
}

// httpStatus is the status of one GET of url, or 0 if none came.
func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestNginxReloadModeContainer is reload mode with nginx in a container:
// baton attaches it to its network, writes the new container's address
// there and sends nginx HUP.
func TestNginxReloadModeContainer(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: e.net, UpstreamFile: "web.conf", InitialServers: []string{name + ":8080"}})
	load := startLoad(t, ng.URL()+"/", 2*time.Minute)
	e.mustDeploy("--image", v2, "--relay=false", "--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz", name)
	res := load.Stop()
	t.Logf("reload mode, nginx in a container: %s", res.Summary())
	if res.Failed()*200 > res.Total() {
		t.Fatalf("%d of %d requests failed", res.Failed(), res.Total())
	}
	c := e.assertSingle(name, v2)
	if got := readFile(t, ng.UpstreamFile()); !strings.Contains(got, c.NetworkSettings.Networks[dockerctl.ServiceNetwork(name)].IPAddress+":8080") {
		t.Fatalf("upstream file does not name the new container's address on its service's network:\n%s", got)
	}
	assertServes(t, ng.URL()+"/", "v2")
}

// TestNoProxyControlMode: no --nginx-* flags; nginx proxies to the published
// port, which the new container takes over when the old one stops. The gap
// between the two is what this mode loses (measured by the benchmark).
func TestNoProxyControlMode(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	hostPort := testenv.FreePort(t)
	name := testenv.UniqueName("web-")
	oldID := e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	r := e.mustDeploy("--image", v2, name)
	if !strings.Contains(r.stdout, "traffic: none") {
		t.Fatalf("stdout %q", r.stdout)
	}
	c := e.assertSingle(name, v2)
	if c.ID == oldID {
		t.Fatal("the container was not replaced")
	}
	if got := c.HostConfig.PortBindings["8080/tcp"]; len(got) != 1 || got[0].HostPort != itoa(hostPort) {
		t.Fatalf("port bindings %v", got)
	}
	if _, ok := c.NetworkSettings.Networks[e.net]; !ok {
		t.Fatalf("new container lost network %s: %v", e.net, c.NetworkSettings.Networks)
	}
	if al := c.NetworkSettings.Networks[e.net].Aliases; !contains(al, "web") {
		t.Fatalf("alias web lost: %v", al)
	}
	assertServes(t, "http://127.0.0.1:"+itoa(hostPort)+"/", "v2")
}

// TestUpToDateAndDryRun: deploying the running image is a no-op that says
// so; --dry-run prints the plan and changes nothing.
func TestUpToDateAndDryRun(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	id := e.runWeb(name, v1)

	r := e.mustDeploy(name) // re-pulls v1: unchanged
	if !strings.Contains(r.stdout, "is up to date") {
		t.Fatalf("stdout %q", r.stdout)
	}
	if e.inspect(name).ID != id {
		t.Fatal("a no-op deploy replaced the container")
	}
	// Regression: with --pull missing and a changed --http-probe on the
	// unchanged image, the dry run said "nothing" while the deploy
	// redeployed to record the new setting.
	r = e.mustDeploy("--dry-run", "--pull", "missing", "--http-probe", "/", name)
	for _, want := range []string{"settings changed", "redeploy although the image is unchanged", "stop " + name} {
		if !strings.Contains(r.stdout, want) || strings.Contains(r.stdout, "nothing:") {
			t.Fatalf("dry run output lacks %q (or says nothing):\n%s", want, r.stdout)
		}
	}
	// The new image is not on the host: the plan says it would pull it, and
	// the dry run pulls nothing.
	r = e.mustDeploy("--dry-run", "--image", v2, name)
	for _, want := range []string{"dry run", "would pull " + v2, "stop " + name, "unknown until the new image is pulled"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if _, _, err := e.cli.ImageInspectWithRaw(t.Context(), v2); err == nil {
		t.Fatal("dry run pulled the image")
	}
	// With the image on the host, the plan lists the configuration
	// differences its defaults make (the demo images differ in VERSION).
	e.pull(v2, "")
	r = e.mustDeploy("--dry-run", "--image", v2, name)
	if !strings.Contains(r.stdout, "env VERSION: v1 -> v2") {
		t.Fatalf("dry run does not list the VERSION change:\n%s", r.stdout)
	}
	e.assertUntouched(name, id, "", "")
}

// TestRollback redeploys the previous image, zero-downtime as well.
func TestRollback(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, name, e.net) + ":8080"}})
	e.mustDeploy("--image", v2, "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), name)
	load := startLoad(t, ng.URL()+"/", time.Minute)
	r := e.run("rollback", name)
	if r.code != 0 {
		t.Fatalf("rollback exited %d: %s", r.code, r.stderr)
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	e.assertSingle(name, v1)
	assertServes(t, ng.URL()+"/", "v1")
	c := e.inspect(name)
	if c.Config.Labels["baton.previous-image"] != v2 {
		t.Fatalf("previous image after rollback %q, want %s", c.Config.Labels["baton.previous-image"], v2)
	}
	st := e.run("status", name)
	if st.code != 0 || !strings.Contains(st.stdout, v1) || !strings.Contains(st.stdout, "relay") {
		t.Fatalf("status: %d %s", st.code, st.stdout)
	}
}

// TestRegistryAuth pulls with the docker CLI's stored credentials.
func TestRegistryAuth(t *testing.T) {
	e := newEnv(t)
	e.reg = testenv.StartRegistry(t, testenv.RegistryOpts{Auth: true})
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	// The old container's image is local already; the deploy must pull v2.
	e.pull(v1, e.reg.AuthHeader())
	e.runWeb(name, v1)
	e.extraEnv = []string{"DOCKER_CONFIG=" + t.TempDir()} // no credentials
	r := e.run("deploy", "--image", v2, name)
	if r.code != 1 || !strings.Contains(r.stderr, "no basic auth credentials") {
		t.Fatalf("without credentials: exit %d, stderr %q", r.code, r.stderr)
	}
	e.extraEnv = []string{"DOCKER_CONFIG=" + e.reg.DockerConfigDir(t)}
	e.mustDeploy("--image", v2, name)
	e.assertSingle(name, v2)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPublishedPortAppReachesItsDatabaseWhileWarming: the common host-nginx
// setup where the app publishes a loopback port and needs a database on its
// network to be healthy. The new container cannot join that network while
// the old one holds the port (joining would publish it), so it warms up on
// an internal copy of the network with the database attached; under load
// through nginx nothing fails. The copy stays while the network exists (the
// app's connections through it must keep working) and goes with it.
func TestPublishedPortAppReachesItsDatabaseWhileWarming(t *testing.T) {
	e := newEnv(t)
	// The database is itself a service baton deployed, publishing a port:
	// its container is on its own copy of the network, without aliases
	// there, yet web's warm-up must still find it as "db".
	dbImage, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "db"})
	db := testenv.UniqueName("db-")
	testenv.RunDemo(t, e.cli, testenv.RunOpts{Name: db, Image: dbImage, Network: e.net, Aliases: []string{"db"}, Publish: []string{"127.0.0.1:" + itoa(testenv.FreePort(t)) + ":8080"}})
	e.cleanupService(db)
	e.mustDeploy("--force", "--pull", "never", db)
	needsDB := map[string]string{"NEEDS": "db:8080"} // healthy only while db answers
	v1 := e.version("v1", "v1", needsDB)
	v2 := e.version("v2", "v2", needsDB)
	hostPort := testenv.FreePort(t)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{"127.0.0.1:" + itoa(hostPort)}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--health-timeout", "30s"}
	r := e.mustDeploy(append(append([]string{"--image", v2}, flags...), name)...)
	if !strings.Contains(r.stderr, "internal copy of network "+e.net) {
		t.Fatalf("deploy did not warm up on a copy of %s:\n%s", e.net, r.stderr)
	}
	load := startLoad(t, ng.URL()+"/", 2*time.Minute)
	for _, ref := range []string{v1, v2} {
		e.mustDeploy(append(append([]string{"--image", ref}, flags...), name)...)
	}
	testenv.CheckLoad(t, load.Stop())
	assertServes(t, ng.URL()+"/", "v2")
	assertServes(t, "http://127.0.0.1:"+itoa(hostPort)+"/", "v2")

	netInfo, err := e.cli.NetworkInspect(t.Context(), e.net, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mirror, dbMirror := dockerctl.MirrorName(name, netInfo.ID), dockerctl.MirrorName(db, netInfo.ID)
	m, err := e.cli.NetworkInspect(t.Context(), mirror, network.InspectOptions{})
	if err != nil || !m.Internal {
		t.Fatalf("copy %s of %s: internal=%v, %v", mirror, e.net, m.Internal, err)
	}
	c := e.assertSingle(name, v2)
	nets := slices.Sorted(maps.Keys(c.NetworkSettings.Networks))
	if want := slices.Sorted(slices.Values([]string{dockerctl.ServiceNetwork(name), e.net, mirror})); !slices.Equal(nets, want) {
		t.Fatalf("%s is on networks %v, want %v", name, nets, want)
	}
	if al := c.NetworkSettings.Networks[mirror].Aliases; slices.Contains(al, "web") {
		t.Fatalf("%s has the service alias on its copy (%v): peers would find a warming container by it", name, al)
	}
	dbC := e.inspect(db)
	dbNets := slices.Sorted(maps.Keys(dbC.NetworkSettings.Networks))
	if want := slices.Sorted(slices.Values([]string{dockerctl.ServiceNetwork(db), e.net, dbMirror, mirror})); !slices.Equal(dbNets, want) {
		t.Fatalf("%s is on networks %v, want %v", db, dbNets, want)
	}
	if al := dbC.NetworkSettings.Networks[mirror].Aliases; !slices.Contains(al, "db") {
		t.Fatalf("%s is on %s's copy as %v, want alias db", db, name, al)
	}
	if copies := e.mirrorsOf(netInfo.ID); len(copies) != 2 {
		t.Fatalf("%d copies of %s after deploys of two services, want 2 (one each)", len(copies), e.net)
	}

	// The network goes (the user takes web down and moves db off it): the
	// next baton run removes its copies. That run is a status of db alone: a
	// status of every service would also converge the services other tests
	// are deploying right now, whose locks and records are in state
	// directories of their own (their new containers would look like
	// leftovers to it).
	if err := e.cli.ContainerRemove(t.Context(), name, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.cli.NetworkDisconnect(t.Context(), e.net, db, true); err != nil {
		t.Fatal(err)
	}
	if err := e.cli.NetworkRemove(t.Context(), e.net); err != nil {
		t.Fatalf("removing %s: %v", e.net, err)
	}
	if r := e.run("status", db); r.code != 0 || !strings.Contains(r.stderr, mirror) || !strings.Contains(r.stderr, dbMirror) {
		t.Fatalf("baton status %s (exit %d) did not remove the copies:\n%s", db, r.code, r.stderr)
	}
	if left := e.mirrorsOf(netInfo.ID); len(left) > 0 {
		t.Fatalf("copy of removed network %s left: %v", e.net, left)
	}
}

// mirrorsOf lists baton's warm-up copies of the network with this ID.
func (e *env) mirrorsOf(networkID string) []network.Summary {
	e.t.Helper()
	list, err := e.cli.NetworkList(e.t.Context(), network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", dockerctl.LabelMirrorOfID+"="+networkID))})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// TestZeroDowntimeRelayUpstreamKeepalive: nginx on the host keeps its
// upstream connections to the relay open, each for at most a second
// (keepalive_time, keepalive_timeout), which spares the relay a connection
// per request. Consecutive deploys under load still fail no request, and
// each drain ends by itself (nginx closes the old container's connections
// after their request), not by the drain timeout.
func TestZeroDowntimeRelayUpstreamKeepalive(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, name, e.net) + ":8080"},
		Upstream: testenv.KeepaliveUpstream, Location: testenv.KeepaliveLocation})
	// A drain that waited for the timeout would say so and take 20s.
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", "--drain", "20s"}
	e.mustDeploy(append(append([]string{"--image", v2}, flags...), name)...)
	load := startLoad(t, ng.URL()+"/", 3*time.Minute)
	for i, ref := range []string{v1, v2, v1} {
		r := e.mustDeploy("--image", ref, name)
		if !strings.Contains(r.stdout, "traffic: relay") || strings.Contains(r.stdout+r.stderr, "drain time over") {
			t.Fatalf("deploy %d: the drain did not end by itself, or no relay:\nstdout %q\nstderr %q", i, r.stdout, r.stderr)
		}
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: the deploys did not move traffic", res.Versions())
	}
	e.assertSingle(name, v1)
	assertServes(t, ng.URL()+"/", "v1")
}
