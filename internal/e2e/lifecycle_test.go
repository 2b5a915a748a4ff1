package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// wsLocation proxies /ws as a WebSocket (HTTP/1.1 with the Upgrade
// headers, as the README's nginx snippet has it) beside the default
// location.
const wsLocation = testenv.DefaultLocation + `
        location /ws {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
        }`

// wsClient holds one WebSocket to the demo app through nginx, and
// reconnects whenever it ends: cleanly (a close frame from the app) or cut
// (the connection ended without one).
type wsClient struct {
	mu       sync.Mutex
	greeted  []string // versions that greeted it, in order
	clean    int
	cut      int
	errs     []string
	upstream string // host:port of nginx
}

func (c *wsClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		v, clean, err := c.session(ctx)
		c.mu.Lock()
		switch {
		case ctx.Err() != nil:
		case err != nil && v == "":
			c.errs = append(c.errs, err.Error())
		case clean:
			c.clean++
		default:
			c.cut++
		}
		c.mu.Unlock()
		if err != nil && v == "" {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// session connects, records the greeting and waits for the end: clean is
// true when the app sent a close frame.
func (c *wsClient) session(ctx context.Context) (version string, clean bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.upstream)
	if err != nil {
		return "", false, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		c.upstream, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", false, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return "", false, fmt.Errorf("upgrade answered %s", resp.Status)
	}
	op, payload, err := wsRead(br)
	if err != nil || op != 1 {
		return "", false, fmt.Errorf("no greeting (op %d): %v", op, err)
	}
	version = strings.TrimPrefix(string(payload), "hello ")
	c.mu.Lock()
	c.greeted = append(c.greeted, version)
	c.mu.Unlock()
	for {
		op, payload, err := wsRead(br)
		if err != nil {
			return version, false, err
		}
		if op == 8 {
			_ = wsWriteMasked(conn, 8, payload)
			return version, true, nil
		}
	}
}

func wsRead(r io.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	} else if n == 127 {
		return 0, nil, errors.New("frame too large")
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return h[0] & 0x0f, p, err
}

func wsWriteMasked(w io.Writer, op byte, payload []byte) error {
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{0x80 | op, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for i, x := range payload {
		b = append(b, x^mask[i%4])
	}
	_, err := w.Write(b)
	return err
}

type wsFleet []*wsClient

func (f wsFleet) snapshot() (clean, cut int, last map[string]int, errs []string) {
	last = map[string]int{}
	for _, c := range f {
		c.mu.Lock()
		clean += c.clean
		cut += c.cut
		if n := len(c.greeted); n > 0 {
			last[c.greeted[n-1]]++
		}
		errs = append(errs, c.errs...)
		c.mu.Unlock()
	}
	return clean, cut, last, errs
}

// waitAllOn waits until every client's latest greeting is from version v.
func (f wsFleet) waitAllOn(t *testing.T, v string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, last, errs := f.snapshot()
		if last[v] == len(f) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WebSocket clients on %v, want all %d on %s (errors: %v)", last, len(f), v, errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deployResult runs a deploy with --json and returns its result line.
func (e *env) deployResult(args ...string) (res struct {
	Outcome string `json:"outcome"`
	Error   string `json:"error"`
	Drain   *struct {
		Counted bool   `json:"counted"`
		Waited  int    `json:"waited"`
		Kernel  int    `json:"kernel_waited"`
		Cut     int    `json:"cut"`
		Signal  string `json:"signal"`
	} `json:"drain"`
}, code int) {
	e.t.Helper()
	r := e.run(append([]string{"deploy", "--json"}, args...)...)
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if strings.Contains(line, `"type":"result"`) {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				e.t.Fatalf("result line %q: %v", line, err)
			}
		}
	}
	return res, r.code
}

// TestLongLivedConnectionsDrain: WebSocket clients through real nginx and
// baton's relay, beside steady HTTP load. With --drain-signal SIGUSR1 the
// old app closes its WebSockets cleanly when traffic moves, every client
// reconnects to the new container and baton reports none cut. Without a
// signal and a short --drain, the same clients are cut when the old
// container stops, and baton counts exactly those. No HTTP request fails.
func TestLongLivedConnectionsDrain(t *testing.T) { testLongLivedDrain(t, false) }

// TestLongLivedConnectionsDrainKernelPath is the same with --kernel-path:
// the WebSockets reach the old container through the kernel, which no
// relay counts, so the drain reads the container's own connection table.
// The demo app listens dual-stack, as Go servers do: its connections are
// in tcp6, which a count of tcp alone missed, and the drain then stopped
// the old container under them at once.
func TestLongLivedConnectionsDrainKernelPath(t *testing.T) { testLongLivedDrain(t, true) }

func testLongLivedDrain(t *testing.T, kernelPath bool) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("ws-")
	hostPort := testenv.FreePort(t)
	e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/ws.conf",
		InitialServers: []string{"127.0.0.1:" + itoa(hostPort)}, Location: wsLocation})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz"}
	first := append([]string{"--image", v2}, flags...)
	if kernelPath {
		removeRoute(t, kernelpath.NewTable(kernelpath.ExecRunner{}), name)
		first = append(first, "--kernel-path") // recorded: the later deploys keep it
	}
	e.mustDeploy(append(first, name)...) // sets up the relay (the one reload)

	u, err := url.Parse(ng.URL())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	fleet := make(wsFleet, 6)
	var wg sync.WaitGroup
	for i := range fleet {
		fleet[i] = &wsClient{upstream: u.Host}
		wg.Add(1)
		go func() { defer wg.Done(); fleet[i].run(ctx) }()
	}
	defer wg.Wait()
	defer cancel()
	fleet.waitAllOn(t, "v2")
	load := startLoad(t, ng.URL()+"/", 3*time.Minute)

	// With the drain signal: the app closes them, they reconnect to v1.
	res, code := e.deployResult(append(append([]string{"--image", v1, "--drain-signal", "SIGUSR1", "--drain", "20s"}, flags...), name)...)
	if code != 0 || res.Outcome != "deployed" {
		t.Fatalf("deploy with --drain-signal: exit %d %+v", code, res)
	}
	fleet.waitAllOn(t, "v1")
	clean, cut, _, _ := fleet.snapshot()
	t.Logf("with --drain-signal: clients closed cleanly %d, cut %d; baton: %+v", clean, cut, res.Drain)
	if clean != len(fleet) || cut != 0 {
		t.Fatalf("clients: %d closed cleanly, %d cut; want %d clean, 0 cut", clean, cut, len(fleet))
	}
	if res.Drain == nil || !res.Drain.Counted || res.Drain.Signal != "SIGUSR1" || res.Drain.Cut != 0 || res.Drain.Waited < len(fleet) {
		t.Fatalf("baton's drain report %+v, want signal SIGUSR1, waited >= %d, cut 0", res.Drain, len(fleet))
	}
	if kernelPath && res.Drain.Kernel < len(fleet) {
		t.Fatalf("baton's drain report %+v: the kernel path carried the %d WebSockets, want kernel_waited >= %d", res.Drain, len(fleet), len(fleet))
	}

	// Control: no signal, a short drain: the stop cuts them, and baton
	// counts exactly the clients that were cut.
	res, code = e.deployResult(append(append([]string{"--image", v2, "--drain-signal", "", "--drain", "2s"}, flags...), name)...)
	if code != 0 || res.Outcome != "deployed" {
		t.Fatalf("deploy without a signal: exit %d %+v", code, res)
	}
	fleet.waitAllOn(t, "v2")
	clean2, cut2, _, _ := fleet.snapshot()
	t.Logf("without a signal: clients closed cleanly %d, cut %d; baton: %+v", clean2-clean, cut2-cut, res.Drain)
	if clean2 != clean || cut2 != len(fleet) {
		t.Fatalf("clients: %d more closed cleanly, %d cut; want 0 and %d cut", clean2-clean, cut2, len(fleet))
	}
	if res.Drain == nil || res.Drain.Signal != "" || res.Drain.Cut != len(fleet) {
		t.Fatalf("baton's drain report %+v, want %d cut", res.Drain, len(fleet))
	}
	if j := readFile(t, e.engineState()+"/journal.jsonl"); !strings.Contains(j, fmt.Sprintf(`"cut":%d`, len(fleet))) {
		t.Fatalf("journal lacks the drain counts: %s", j)
	}
	cancel()
	testenv.CheckLoad(t, load.Stop())
}

// TestPreSwitchStep: under load through nginx and the relay, a failing
// --pre-switch leaves the old container serving with its output in the
// error, and a succeeding one runs exactly once, in the new container,
// before any request reached it (the step writes the number of requests
// the app had served, which the app then serves).
func TestPreSwitchStep(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("pre-")
	hostPort := testenv.FreePort(t)
	e.runWeb(name, v1, "127.0.0.1:"+itoa(hostPort)+":8080")
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/pre.conf", InitialServers: []string{"127.0.0.1:" + itoa(hostPort)}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz"}
	e.mustDeploy(append(append([]string{"--image", v2}, flags...), name)...)
	load := startLoad(t, ng.URL()+"/", 3*time.Minute)
	old := e.inspect(name)

	r := e.run(append(append([]string{"deploy", "--image", v1, "--pre-switch", "/demoapp -probe http://127.0.0.1:8080/pre-switch"}, flags...), name)...)
	if r.code != 1 || !strings.Contains(r.stderr, "--pre-switch /demoapp -probe http://127.0.0.1:8080/pre-switch in "+name+"-baton-") ||
		!strings.Contains(r.stderr, "exited 1: 404 no pre-switch step ran") || !strings.Contains(r.stderr, "keeps serving") {
		t.Fatalf("failing pre-switch: exit %d, stderr %q; want exit 1 naming the command, its exit and output", r.code, r.stderr)
	}
	e.assertUntouched(name, old.ID, ng.URL()+"/", "v2")

	e.mustDeploy(append(append([]string{"--image", v1, "--pre-switch", "/demoapp -pre-switch http://127.0.0.1:8080"}, flags...), name)...)
	e.assertSingle(name, v1)
	resp, err := http.Get(ng.URL() + "/pre-switch")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "served=0\n" {
		t.Fatalf("GET /pre-switch through nginx: %d %q; want one run that saw 0 requests served", resp.StatusCode, body)
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 {
		t.Fatalf("versions served %v: v1 never served", res.Versions())
	}
}

// TestCloneDriftRefused: a container with a MAC address of its own cannot
// be cloned faithfully while it runs; the deploy (and its dry run) is
// refused naming the field, with nothing created, and --accept-drift
// mac-address deploys a copy with a generated MAC. All under keep-alive
// GET+POST load through nginx (in a container, pointed at the app until the
// accepted deploy puts the relay in front). That deploy is the service's
// first, so it reloads nginx once, and a POST sent on a keep-alive
// connection at the instant nginx's retiring workers close it fails (the
// nginx-reload caveat in the README; Go's client retries only idempotent
// requests): those, and only those, are counted apart, bounded by one per
// load client, all at one moment. Nothing else may fail.
func TestCloneDriftRefused(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("mac-")
	e.pull(v1, "")
	const mac = "02:42:ac:1e:00:63"
	id := testenv.RunDemo(t, e.cli, testenv.RunOpts{Name: name, Image: v1, Network: e.net, MacAddress: mac})
	testenv.WaitHealthy(t, e.cli, id, 60*time.Second)
	e.cleanupService(name)
	ng := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: e.net, UpstreamFile: "web.conf", InitialServers: []string{name + ":8080"}})
	load := startLoad(t, ng.URL()+"/", 3*time.Minute)

	for _, dry := range []bool{true, false} {
		args := []string{"deploy", "--image", v2}
		if dry {
			args = append(args, "--dry-run")
		}
		r := e.run(append(args, name)...)
		if r.code != 2 || !strings.Contains(r.stderr, "mac-address "+mac) || !strings.Contains(r.stderr, "--accept-drift mac-address") {
			t.Fatalf("dry run %v: exit %d, stderr %q; want exit 2 naming mac-address", dry, r.code, r.stderr)
		}
	}
	e.assertUntouched(name, id, "", "")

	r := e.run("deploy", "--image", v2, "--dry-run", "--accept-drift", "mac-address", name)
	if r.code != 0 || !strings.Contains(r.stdout, "accepted drift: mac-address "+mac) {
		t.Fatalf("dry run with --accept-drift: exit %d stdout %q", r.code, r.stdout)
	}
	deployFrom := time.Now()
	e.mustDeploy("--image", v2, "--accept-drift", "mac-address", "--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz", name)
	deployTo := time.Now()
	c := e.assertSingle(name, v2)
	ep := c.NetworkSettings.Networks[e.net]
	if ep == nil || ep.MacAddress == "" || ep.MacAddress == mac {
		t.Fatalf("new container's endpoint on %s: %+v; want a generated MAC, not %s", e.net, ep, mac)
	}
	assertServes(t, ng.URL()+"/", "v2")
	res := load.Stop()
	t.Logf("load: %s; versions %v", res.Summary(), res.Versions())
	var atReload, lost []loadgen.Sample
	for _, f := range res.Failures() {
		if f.Method == "POST" && f.Reused && f.Status == 0 && strings.Contains(f.Err, "EOF") && f.Start.After(deployFrom) && f.Start.Before(deployTo) {
			atReload = append(atReload, f)
			continue
		}
		lost = append(lost, f)
	}
	t.Logf("%d of %d requests failed: %d POSTs on keep-alive connections nginx's reload closed, %d otherwise", res.Failed(), res.Total(), len(atReload), len(lost))
	if len(lost) > 0 {
		t.Fatalf("%d requests failed other than at nginx's one reload:\n%s", len(lost), describeSamples(lost))
	}
	slices.SortFunc(atReload, func(a, b loadgen.Sample) int { return a.Start.Compare(b.Start) })
	if len(atReload) > loadClients || (len(atReload) > 0 && atReload[len(atReload)-1].Start.Sub(atReload[0].Start) > time.Second) {
		t.Fatalf("%d POSTs failed on closed keep-alive connections, over more than one moment or more than one per client (%d): not one reload:\n%s", len(atReload), loadClients, describeSamples(atReload))
	}
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: want both the MAC-holding v1 and its v2 replacement under load", res.Versions())
	}
}

// TestStaticIPHandover: a container with a static IP (docker run --ip),
// which two containers cannot hold at once, is deployed under keep-alive
// GET+POST load through nginx (in a container on the same network). The
// dry run says the new container warms up without the address and takes
// it when the old one has stopped; after each deploy the serving container
// holds that IP (a peer addressing it directly reaches the new version),
// nothing is left over, and no request through nginx fails.
func TestStaticIPHandover(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	net, prefix := testenv.SubnetNetwork(t, e.cli)
	ip := prefix + "7"
	name := testenv.UniqueName("ip-")
	e.pull(v1, "")
	id := testenv.RunDemo(t, e.cli, testenv.RunOpts{Name: name, Image: v1, Network: net, Aliases: []string{"web"}, IPv4Address: ip})
	testenv.WaitHealthy(t, e.cli, id, 60*time.Second)
	e.cleanupService(name)
	ng := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: net, UpstreamFile: "web.conf", InitialServers: []string{ip + ":8080"}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz"}
	deploy := func(ref string) []string { return append(append([]string{"--image", ref}, flags...), name) }

	dry := e.run(append([]string{"deploy", "--dry-run"}, deploy(v2)...)...)
	if want := "static IP " + ip + " on network " + net; dry.code != 0 || !strings.Contains(dry.stdout+dry.stderr, want) {
		t.Fatalf("dry run: exit %d, want 0 saying %q:\nstdout: %s\nstderr: %s", dry.code, want, dry.stdout, dry.stderr)
	}
	e.assertUntouched(name, id, "", "")
	holds := func(ref, v string) {
		t.Helper()
		c := e.assertSingle(name, ref)
		if ep := c.NetworkSettings.Networks[net]; ep == nil || ep.IPAddress != ip || ep.IPAMConfig == nil || ep.IPAMConfig.IPv4Address != ip {
			t.Fatalf("%s's endpoint on %s: %+v; want the static IP %s", name, net, ep, ip)
		}
		assertServes(t, "http://"+ip+":8080/", v)
	}
	// The first deploy puts the relay in front of the app (nginx's one
	// reload); the others run under load.
	e.mustDeploy(deploy(v2)...)
	holds(v2, "v2")
	load := startLoad(t, ng.URL()+"/", 3*time.Minute)
	for _, step := range []struct{ ref, v string }{{v1, "v1"}, {v2, "v2"}} {
		e.mustDeploy(deploy(step.ref)...)
		holds(step.ref, step.v)
	}
	res := load.Stop()
	testenv.CheckLoad(t, res)
	if res.Versions()["v1"] == 0 || res.Versions()["v2"] == 0 {
		t.Fatalf("versions served %v: the deploys did not move traffic", res.Versions())
	}
}

// TestWatchCooldown: with --min-age, a digest pushed to the local registry
// is not deployed while it is younger than the cooldown (watch says which
// digest waits and until when); once the cooldown has passed since the
// first sighting, watch deploys it, with no failed request through nginx.
// The same holds for a container whose baton.min-age label asks for the
// cooldown, with no flag.
func TestWatchCooldown(t *testing.T) {
	const minAge = 3 * time.Second
	t.Run("flag", func(t *testing.T) {
		e := newEnv(t)
		s := e.service("live", "v1", nil)
		watchCooledDown(t, e, s, minAge, "--min-age", minAge.String())
	})
	t.Run("label", func(t *testing.T) {
		e := newEnv(t)
		s := e.serviceLabelled("live", "v1", nil, map[string]string{"baton.min-age": minAge.String()})
		watchCooledDown(t, e, s, minAge)
	})
}

// watchCooledDown pushes a new build of s's tag and checks watch --once
// (with args) holds it back for minAge from its first sighting, then
// deploys it under load.
func watchCooledDown(t *testing.T, e *env, s *unattendedService, minAge time.Duration, args ...string) {
	t.Helper()
	before := e.inspect(s.name)
	base := len(entriesBy(e.journal(), "watch"))
	load := startLoad(t, s.ng.URL()+"/", 3*time.Minute)
	e.version("live", "v2", nil) // a new build under the same tag
	watch := append(append([]string{"watch", "--once"}, args...), "--scope", s.scope)

	r := e.run(watch...)
	if r.code != 0 || !strings.Contains(r.stderr, "cooling down") || !strings.Contains(r.stderr, "deploy_after=") ||
		!strings.Contains(r.stderr, "container="+s.name) || !strings.Contains(r.stderr, "digest=sha256:") || !strings.Contains(r.stderr, "min_age="+minAge.String()) {
		t.Fatalf("first check: exit %d stderr %q; want the digest reported as cooling down for %s", r.code, r.stderr, minAge)
	}
	if c := e.inspect(s.name); c.ID != before.ID || len(entriesBy(e.journal(), "watch")) != base {
		t.Fatal("a digest younger than the cooldown was deployed")
	}
	var seen map[string]time.Time
	decodeJSON(t, readFile(t, e.engineState()+"/watch-seen.json"), &seen)
	if len(seen) != 1 {
		t.Fatalf("watch-seen.json %v, want the one digest", seen)
	}
	var first time.Time
	for _, ts := range seen {
		first = ts
	}
	// Let the cooldown pass (a wait for the condition under test, not a
	// timed assertion).
	time.Sleep(time.Until(first.Add(minAge)) + 100*time.Millisecond)

	r = e.run(watch...)
	if r.code != 0 {
		t.Fatalf("second check: exit %d stderr %q", r.code, r.stderr)
	}
	en := entriesBy(e.journal(), "watch")
	if len(en) != base+1 || en[base].Outcome != "deployed" || en[base].StartedAt.Before(first.Add(minAge)) {
		t.Fatalf("journal %+v; want one watch deploy after %s", en, first.Add(minAge))
	}
	e.assertSingle(s.name, s.ref)
	res := load.Stop()
	testenv.CheckLoad(t, res)
	assertServes(t, s.ng.URL()+"/", "v2")
}
