package traffic

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/testenv"
)

// TestLegacyLeaverLeavesWhenIdle drives the move off the shared network on
// a shared network of the test's own: a container leaves it only once it
// has moved to its service's network and no connection uses its address on
// the shared one; what is left (an nginx container) leaves with the last
// relay or app container; then the network is removed.
func TestLegacyLeaverLeavesWhenIdle(t *testing.T) {
	cli := testenv.Docker(t)
	ctx := t.Context()
	eng, err := dockerctl.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()

	shared := sharedTestNetwork(t, cli, eng)
	svcNet, err := eng.EnsureServiceNetwork(ctx, testenv.UniqueName("leaver-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeServiceNetwork(t, eng, svcNet) })

	img, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "A"})
	app := testenv.RunDemo(t, cli, testenv.RunOpts{Image: img, Network: shared, Labels: map[string]string{"baton.managed": "true", "baton.role": "app"}})
	rel := testenv.RunDemo(t, cli, testenv.RunOpts{Image: img, Network: shared, Labels: map[string]string{"baton.managed": "true", "baton.role": "relay"}})
	ngx := testenv.RunDemo(t, cli, testenv.RunOpts{Image: img, Network: shared})
	for _, id := range []string{app, rel} {
		if err := eng.NetworkConnect(ctx, svcNet, id, &network.EndpointSettings{}); err != nil {
			t.Fatal(err)
		}
	}
	appShared := testenv.ContainerIP(t, cli, app, shared)
	testenv.WaitHTTP(t, "http://"+net.JoinHostPort(appShared, "8080")+"/healthz", 30*time.Second)
	on := func(id, netName string) bool {
		c, err := cli.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := c.NetworkSettings.Networks[netName]
		return ok
	}
	var notes []string
	l := legacyLeaver{network: shared, eng: eng, log: slog.New(slog.DiscardHandler), notify: func(s string) { notes = append(notes, s) }, wait: time.Second}

	// A connection on the app's shared address keeps it there; the nginx
	// container has no service network, so it stays too.
	hold, err := net.DialTimeout("tcp", net.JoinHostPort(appShared, "8080"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l.leave(ctx, []string{app, ngx})
	if !on(app, shared) || !on(ngx, shared) {
		t.Fatalf("left the shared network while in use (app: %v, nginx: %v); notes %v", on(app, shared), on(ngx, shared), notes)
	}

	// Idle now: the app leaves, and still serves on its service's network.
	hold.Close()
	l.leave(ctx, []string{app})
	if on(app, shared) || !on(app, svcNet) {
		t.Fatalf("after the connection closed: app on shared %v, on its service's network %v; notes %v", on(app, shared), on(app, svcNet), notes)
	}
	testenv.WaitHTTP(t, "http://"+net.JoinHostPort(testenv.ContainerIP(t, cli, app, svcNet), "8080")+"/healthz", 10*time.Second)
	if !on(ngx, shared) {
		t.Fatal("the nginx container left while a relay still needs it there")
	}

	// The last relay leaves: the nginx container follows, the network goes.
	l.leave(ctx, []string{rel})
	if on(rel, shared) || on(ngx, shared) {
		t.Fatalf("relay on shared %v, nginx on shared %v; notes %v", on(rel, shared), on(ngx, shared), notes)
	}
	if _, err := cli.NetworkInspect(ctx, shared, network.InspectOptions{}); !errdefs.IsNotFound(err) {
		t.Fatalf("the shared network is still there (inspect: %v); notes %v", err, notes)
	}
	t.Logf("notes: %v", notes)
}

// A network called like the shared one but not baton's is never touched.
func TestLegacyLeaverIgnoresForeignNetwork(t *testing.T) {
	cli := testenv.Docker(t)
	ctx := context.WithoutCancel(t.Context())
	eng, err := dockerctl.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	foreign := testenv.Network(t, cli, "", true)
	img, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "A"})
	id := testenv.RunDemo(t, cli, testenv.RunOpts{Image: img, Network: foreign, Labels: map[string]string{"baton.role": "app"}})
	l := legacyLeaver{network: foreign, eng: eng, log: slog.New(slog.DiscardHandler), notify: func(string) {}, wait: time.Second}
	l.leave(ctx, []string{id})
	c, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.NetworkSettings.Networks[foreign]; !ok {
		t.Fatal("a container was detached from a network baton did not make")
	}
}

// establishedOn finds connections on an address in both tables, IPv4 and
// dual-stack. The tables are the whole network namespace's, shared with every
// other process on the host, so the test uses loopback addresses of its own
// (127.0.0.0/8 is all local) and expects exact counts on them.
func TestEstablishedOn(t *testing.T) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	for _, lnNet := range []string{"tcp4", "tcp"} { // tcp: dual stack where IPv6 is on
		mine := net.IPv4(127, byte(100+r.IntN(100)), byte(1+r.IntN(250)), byte(1+r.IntN(250)))
		other := net.IPv4(127, byte(100+r.IntN(100)), byte(1+r.IntN(250)), byte(1+r.IntN(250)))
		if mine.Equal(other) {
			other = net.IPv4(127, 99, 0, 1)
		}
		ln, err := net.Listen(lnNet, ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		if got, ok := establishedOn(os.Getpid(), mine); !ok || got != 0 {
			t.Fatalf("%s: %d established on %s before the test's connection (readable: %v), want 0", lnNet, got, mine, ok)
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: mine}}
		c, err := d.Dial("tcp4", net.JoinHostPort(mine.String(), strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		// Both ends are on the test's own address: exactly two.
		if got, _ := establishedOn(os.Getpid(), mine); got != 2 {
			t.Errorf("%s: %d established on %s with one connection open, want 2", lnNet, got, mine)
		}
		if got, _ := establishedOn(os.Getpid(), other); got != 0 {
			t.Errorf("%s: %d established on %s, want 0", lnNet, got, other)
		}
		c.Close()
		s.Close()
	}
}

// sharedTestNetwork stands in for the shared network of earlier versions: a
// test's own, removed with the test.
func sharedTestNetwork(t *testing.T, cli *client.Client, eng *dockerctl.Client) string {
	t.Helper()
	shared := testenv.UniqueName("baton-test-shared-")
	if _, err := cli.NetworkCreate(t.Context(), shared, network.CreateOptions{Driver: "bridge", Internal: true, Labels: map[string]string{"baton.managed": "true", "baton.test": "1"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeServiceNetwork(t, eng, shared) })
	return shared
}

// A container whose image labels it baton's app (baton.managed=true,
// baton.role=app) does not keep the nginx containers on the shared network:
// only baton's own role labels do (TestLegacyLeaverLeavesWhenIdle is the
// positive control, where a relay keeps nginx there).
func TestLegacyLeaverIgnoresImageRole(t *testing.T) {
	cli := testenv.Docker(t)
	ctx := t.Context()
	eng, err := dockerctl.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	shared := sharedTestNetwork(t, cli, eng)
	hostileImg, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "H", Labels: map[string]string{"baton.managed": "true", "baton.role": "app", "baton.service": "zz"}})
	img, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "A"})
	hostile := testenv.RunDemo(t, cli, testenv.RunOpts{Image: hostileImg, Network: shared})
	ngx := testenv.RunDemo(t, cli, testenv.RunOpts{Image: img, Network: shared})
	l := legacyLeaver{network: shared, eng: eng, log: slog.New(slog.DiscardHandler), notify: func(string) {}, wait: time.Second}
	l.leave(ctx, nil)
	for name, id := range map[string]string{"nginx": ngx, "hostile": hostile} {
		c, err := cli.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.NetworkSettings.Networks[shared]; ok {
			t.Errorf("%s container still on the shared network: the image's role label kept it there", name)
		}
	}
	if _, err := cli.NetworkInspect(ctx, shared, network.InspectOptions{}); !errdefs.IsNotFound(err) {
		t.Fatalf("the shared network is still there (inspect: %v)", err)
	}
}
