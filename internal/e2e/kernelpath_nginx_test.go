package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// TestKernelPathNginxContainer is --kernel-path for an nginx in a
// container: between deploys one rule in nginx's own network namespace
// carries its connections for the relay's address straight to the serving
// container, so requests arrive from nginx's own address on the service's
// network, where through the relay they arrive from the relay's. Under
// steady load across deploys no request may fail; the host's firewall gets
// no rule; a restart of nginx (a new namespace, without the rule) leaves
// the relay carrying until baton status routes again; --kernel-path=false
// takes the rule away.
func TestKernelPathNginxContainer(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	ctx := t.Context()
	host := kernelpath.NewTable(kernelpath.ExecRunner{})

	name := testenv.UniqueName("kpc-")
	e.runWeb(name, v1)
	removeRoute(t, host, name)
	ng := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: e.net, UpstreamFile: "web.conf", InitialServers: []string{name + ":8080"}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz"}
	e.mustDeploy(append([]string{name, "--image", v2, "--kernel-path"}, flags...)...)
	svcNet := dockerctl.ServiceNetwork(name)
	addr := func(ctr string) netip.Addr {
		t.Helper()
		return netip.MustParseAddr(testenv.ContainerIP(t, e.cli, ctr, svcNet))
	}
	relayIP := addr(traffic.RelayName(name))
	// nginx's namespace's rules, read as baton reads them.
	inNginx := func(f func(*kernelpath.Table) error) {
		t.Helper()
		c := e.inspect(ng.Container())
		ns, err := kernelpath.OpenNamespace(c.State.Pid)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		if err := f(kernelpath.NewTable(kernelpath.NamespaceRunner{NS: ns})); err != nil {
			t.Fatal(err)
		}
	}
	routed := func(url, step string) {
		t.Helper()
		want := addr(name).String() + ":8080"
		inNginx(func(tbl *kernelpath.Table) error {
			got, err := tbl.Target(ctx, name)
			if err == nil && got != want {
				t.Fatalf("%s: the kernel path in nginx's namespace -> %q, want the serving container %s", step, got, want)
			}
			return err
		})
		if p := peerOf(t, url+"/peer"); p.Addr() != addr(ng.Container()) {
			t.Fatalf("%s: requests come from %s: want nginx's own address %s (the kernel path), not the relay's %s", step, p, addr(ng.Container()), relayIP)
		}
	}
	throughRelay := func(url, step string) {
		t.Helper()
		if p := peerOf(t, url+"/peer"); p.Addr() != relayIP {
			t.Fatalf("%s: requests come from %s, want the relay's dials from %s", step, p, relayIP)
		}
	}
	routed(ng.URL(), "first deploy")
	if has, err := host.Has(ctx, name); err != nil || has {
		t.Fatalf("the host's firewall has a route for %s (%v, %v): an nginx container's goes in its own namespace", name, has, err)
	}

	load := startLoad(t, ng.URL()+"/", 3*time.Minute)
	for i, ref := range []string{v1, v2, v1} {
		time.Sleep(2 * time.Second) // the kernel path carries the load meanwhile
		r := e.mustDeploy(name, "--image", ref)
		if !strings.Contains(r.stdout, "traffic: relay") {
			t.Fatalf("deploy %d: stdout %q", i, r.stdout)
		}
		routed(ng.URL(), "deploy "+itoa(i+1))
	}
	time.Sleep(2 * time.Second)
	var carried uint64
	inNginx(func(tbl *kernelpath.Table) (err error) {
		carried, err = tbl.Connections(ctx, name)
		return err
	})
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: the deploys did not move traffic", res.Versions())
	}
	if carried == 0 {
		t.Fatalf("the kernel path carried none of the load after the last deploy")
	}
	t.Logf("%d requests, none failed; the kernel path in nginx's namespace carried %d connections in the 2 s after the last deploy", res.Total(), carried)
	e.assertSingle(name, v1)

	// A restarted nginx has a new namespace without the rule: the relay
	// carries, until baton status routes again.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := e.cli.ContainerRestart(rctx, ng.Container(), container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	// Its published port is picked anew at the restart.
	url := "http://" + testenv.HostAddr(t, e.cli, ng.Container(), "80/tcp")
	testenv.WaitHTTP(t, url+"/", 30*time.Second)
	throughRelay(url, "after nginx restarted")
	st := e.run("status", name)
	if st.code != 0 || !strings.Contains(st.stdout, "kernel path -> "+addr(name).String()) {
		t.Fatalf("status: exit %d, stdout %q; want the kernel path routed again to %s", st.code, st.stdout, addr(name))
	}
	routed(url, "after baton status")

	// Off: nothing to redeploy, the rule goes, the relay carries again.
	id := e.inspect(name).ID
	e.mustDeploy(name, "--kernel-path=false")
	if got := e.inspect(name).ID; got != id {
		t.Fatalf("turning the kernel path off redeployed %s", name)
	}
	inNginx(func(tbl *kernelpath.Table) error {
		has, err := tbl.Has(ctx, name)
		if err == nil && has {
			t.Fatalf("a rule for %s in nginx's namespace after --kernel-path=false", name)
		}
		return err
	})
	throughRelay(url, "kernel path off")
	assertServes(t, url+"/", "v1")
}
