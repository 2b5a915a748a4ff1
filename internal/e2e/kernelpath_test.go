package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// TestKernelPathDeploys is --kernel-path as an operator uses it: nginx on
// the host, the relay on loopback, and between deploys the kernel carrying
// nginx's connections straight to the serving container. Under steady load
// across deploys no request may fail; after each deploy the route names the
// new container on its kernel network, and requests arrive from that
// network's gateway, not through the relay (whose dials come from the
// service network's). A label cannot turn it on; turning it off is an
// up-to-date deploy that takes the route away.
func TestKernelPathDeploys(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	tbl := kernelpath.NewTable(kernelpath.ExecRunner{})
	ctx := t.Context()

	// An operator's label asking for it is refused, before anything is
	// made, and nothing is routed.
	labelled := testenv.UniqueName("kp-label-")
	e.pull(v1, "")
	lid := testenv.RunDemo(t, e.cli, testenv.RunOpts{Name: labelled, Image: v1, Network: e.net, Labels: map[string]string{"baton.kernel-path": "true"}})
	testenv.WaitHealthy(t, e.cli, lid, 60*time.Second)
	e.cleanupService(labelled)
	lng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, labelled, e.net) + ":8080"}})
	removeRoute(t, tbl, labelled)
	r := e.run("deploy", labelled, "--image", v2, "--nginx-upstream", lng.UpstreamFile(), "--nginx-reload", lng.ReloadCommand(), "--http-probe", "/healthz")
	if r.code != 2 || !strings.Contains(r.stderr, "baton takes no firewall rule from a label; pass --kernel-path") {
		t.Fatalf("deploy of a container labelled baton.kernel-path=true: exit %d, stderr %q; want exit 2 naming the flag", r.code, r.stderr)
	}
	if has, err := tbl.Has(ctx, labelled); err != nil || has {
		t.Fatalf("a route for %s after the refusal: %v %v", labelled, has, err)
	}
	if _, err := e.cli.ContainerInspect(ctx, traffic.RelayName(labelled)); !isNotFound(err) {
		t.Fatalf("relay of %s after the refusal: %v, want none", labelled, err)
	}
	e.assertUntouched(labelled, lid, lng.URL()+"/", "v1")

	// The operator's flag (the positive control of the refusal above).
	name := testenv.UniqueName("kp-")
	e.runWeb(name, v1)
	removeRoute(t, tbl, name)
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, name, e.net) + ":8080"}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz"}
	e.mustDeploy(append([]string{name, "--image", v2, "--kernel-path"}, flags...)...)
	subnet := networkSubnet(t, e, dockerctl.ServiceNetwork(name))
	ksubnet := networkSubnet(t, e, dockerctl.KernelNetwork(name))
	routed := func(step string) {
		t.Helper()
		ep := e.inspect(name).NetworkSettings.Networks[dockerctl.KernelNetwork(name)]
		if ep == nil {
			t.Fatalf("%s: %s is not on its kernel network %s", step, name, dockerctl.KernelNetwork(name))
		}
		ip := ep.IPAddress
		got, err := tbl.Target(ctx, name)
		if err != nil || got != ip+":8080" {
			t.Fatalf("%s: kernel path of %s -> %q (%v), want the serving container %s:8080", step, name, got, err, ip)
		}
	}
	routed("first deploy")
	before, err := tbl.Connections(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if p := peerOf(t, ng.URL()+"/peer"); !ksubnet.Contains(p.Addr()) {
		t.Fatalf("requests come from %s: want the gateway of the kernel network %s, not the relay's dials from %s", p, ksubnet, subnet)
	}
	if after, err := tbl.Connections(ctx, name); err != nil || after < before+5 {
		t.Fatalf("the kernel path counted %d connections, then %d after 5 requests (%v)", before, after, err)
	}

	load := startLoad(t, ng.URL()+"/", 3*time.Minute)
	for i, ref := range []string{v1, v2, v1} {
		time.Sleep(2 * time.Second) // the kernel path carries the load meanwhile
		r := e.mustDeploy(name, "--image", ref)
		if !strings.Contains(r.stdout, "traffic: relay") {
			t.Fatalf("deploy %d: stdout %q", i, r.stdout)
		}
		routed("deploy " + itoa(i+1))
	}
	time.Sleep(2 * time.Second)
	carried, err := tbl.Connections(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: the deploys did not move traffic", res.Versions())
	}
	if carried == 0 {
		t.Fatalf("the kernel path carried none of the load after the last deploy")
	}
	t.Logf("%d requests, none failed; the kernel path carried %d connections in the 2 s after the last deploy", res.Total(), carried)
	e.assertSingle(name, v1)

	st := e.run("status", name)
	if st.code != 0 || !strings.Contains(st.stdout, "kernel path -> ") {
		t.Fatalf("status: exit %d, stdout %q; want the kernel path's target", st.code, st.stdout)
	}

	// Off: nothing to redeploy, the route goes, the relay carries again.
	id := e.inspect(name).ID
	e.mustDeploy(name, "--kernel-path=false")
	if got := e.inspect(name).ID; got != id {
		t.Fatalf("turning the kernel path off redeployed %s (%s, was %s)", name, got[:12], id[:12])
	}
	if has, err := tbl.Has(ctx, name); err != nil || has {
		t.Fatalf("a route for %s after --kernel-path=false: %v %v", name, has, err)
	}
	if p := peerOf(t, ng.URL()+"/peer"); !subnet.Contains(p.Addr()) {
		t.Fatalf("with the kernel path off requests come from %s, want the relay's dials from %s", p, subnet)
	}
	assertServes(t, ng.URL()+"/", "v1")
}

// removeRoute takes the service's kernel path away when the test ends,
// whatever it left.
func removeRoute(t *testing.T, tbl *kernelpath.Table, service string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if err := tbl.Remove(ctx, service); err != nil {
			t.Errorf("removing the kernel path of %s: %v", service, err)
		}
	})
}

// networkSubnet is the IPv4 subnet of network name: the service's, whose
// gateway the relay's dials come from, or the kernel network, whose
// gateway the kernel path's connections come from.
func networkSubnet(t *testing.T, e *env, name string) netip.Prefix {
	t.Helper()
	nw, err := e.cli.NetworkInspect(t.Context(), name, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range nw.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is4() {
			return p
		}
	}
	t.Fatalf("network %s has no IPv4 subnet: %+v", nw.Name, nw.IPAM.Config)
	return netip.Prefix{}
}

// peerOf asks the demo app, 5 times over fresh connections, where its
// client connected from, and returns the last address and port; the
// addresses must be the same each time (one path).
func peerOf(t *testing.T, url string) netip.AddrPort {
	t.Helper()
	var peer netip.AddrPort
	for i := 0; i < 5; i++ {
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = errors.New(resp.Status)
		}
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		p, err := netip.ParseAddrPort(strings.TrimSpace(string(body)))
		if err != nil || (peer.IsValid() && p.Addr() != peer.Addr()) {
			t.Fatalf("GET %s: peer %q (%v), earlier %s: requests took different paths", url, body, err, peer)
		}
		peer = p
	}
	return peer
}
