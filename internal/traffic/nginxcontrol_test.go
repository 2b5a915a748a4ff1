package traffic

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/testenv"
)

func TestUpstreamContent(t *testing.T) {
	got := string(upstreamContent([]string{"172.18.0.5:8080", "baton-relay-web:8080"}, false))
	for _, want := range []string{"server 172.18.0.5:8080 max_fails=0;\n", "server baton-relay-web:8080 max_fails=0;\n", "# Written by baton"} {
		if !strings.Contains(got, want) {
			t.Fatalf("upstream file lacks %q:\n%s", want, got)
		}
	}
}

func TestWorkersFromTop(t *testing.T) {
	titles := []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}
	procs := [][]string{
		{"root", "100", "1", "0", "10:00", "?", "00:00:00", "nginx: master process /usr/sbin/nginx -g daemon off;"},
		{"root", "101", "100", "0", "10:00", "?", "00:00:00", "nginx: worker process"},
		{"root", "102", "100", "0", "10:00", "?", "00:00:00", "nginx: worker process is shutting down"},
		{"root", "103", "100", "0", "10:01", "?", "00:00:00", "nginx: worker process"},
	}
	live := workersFromTop(titles, procs)
	if len(live) != 2 || live[101] != 100 || live[103] != 100 {
		t.Fatalf("live workers %v", live)
	}
	all := allWorkersFromTop(titles, procs)
	if _, ok := all[102]; len(all) != 3 || !ok {
		t.Fatalf("all workers %v", all)
	}
	if !live.hasNew(workerSet{101: 100}) || live.hasNew(workerSet{101: 100, 103: 100}) {
		t.Fatal("hasNew")
	}
}

// TestReloadedPerMaster: a reload is confirmed by its own master's workers;
// another nginx on the host (whose workers stay) neither holds it up nor
// confirms it.
func TestReloadedPerMaster(t *testing.T) {
	before := workerSet{11: 10, 12: 10, 21: 20}
	cases := []struct {
		name string
		now  workerSet
		want workerSet
	}{
		{"master 10 reloaded, 20 untouched", workerSet{13: 10, 21: 20}, workerSet{11: 10, 12: 10}},
		{"master 10 half way: an old worker is still live", workerSet{12: 10, 13: 10, 21: 20}, nil},
		{"nothing reloaded", workerSet{11: 10, 12: 10, 21: 20}, nil},
		{"old workers gone but no new one", workerSet{21: 20}, nil},
		{"master 20 reloaded", workerSet{11: 10, 12: 10, 22: 20}, workerSet{21: 20}},
	}
	for _, tc := range cases {
		got := tc.now.reloaded(before)
		if len(got) != len(tc.want) || (tc.want == nil) != (got == nil) {
			t.Errorf("%s: reloaded = %v, want %v", tc.name, got, tc.want)
			continue
		}
		for pid, m := range tc.want {
			if got[pid] != m {
				t.Errorf("%s: reloaded = %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}

// establishedConns reads the connection table of a process's network
// namespace; here our own, with one connection made on purpose.
func TestEstablishedConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	before, ok := establishedConns(os.Getpid(), port)
	if !ok || before != 0 {
		t.Fatalf("before: %d ok=%v", before, ok)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := establishedConns(os.Getpid(), port); n != 1 {
		t.Fatalf("with one connection: %d", n)
	}
	c.Close()
	s.Close()
	if _, ok := establishedConns(0, port); ok {
		t.Fatal("pid 0 should be unreadable")
	}
}

// nginxControl against a real nginx on the host: a change is written and
// reloaded (and verified by nginx's new workers), an unchanged file causes
// no reload, and a reload nginx rejects puts the previous file back.
func TestNginxControlHost(t *testing.T) {
	if testing.Short() {
		t.Skip("needs nginx")
	}
	a := httpServer(t, "A")
	b := httpServer(t, "B")
	file := t.TempDir() + "/web.conf"
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: file, InitialServers: []string{a}})
	n := &nginxControl{file: file, reloadCmd: ng.ReloadCommand(), log: slog.New(slog.DiscardHandler), notify: func(string) {}, reloadTimeout: 5 * time.Second}

	if got := get(t, ng.URL()); got != "A" {
		t.Fatalf("before: %q", got)
	}
	old, err := n.apply(t.Context(), []string{b})
	if err != nil {
		t.Fatal(err)
	}
	if len(old) == 0 {
		t.Fatal("apply did not report the workers it replaced")
	}
	if got := get(t, ng.URL()); got != "B" {
		t.Fatalf("after switching to B: %q", got)
	}
	if old, err := n.apply(t.Context(), []string{b}); err != nil || old != nil {
		t.Fatalf("same servers again: reloaded=%v err=%v", old != nil, err)
	}
	good, _ := os.ReadFile(file)

	// A server line nginx refuses: `nginx -s reload` itself rejects it (a
	// bare HUP would leave the old workers running, which apply also
	// detects; see the container test).
	if _, err := n.apply(t.Context(), []string{"not a host:port"}); err == nil || !strings.Contains(err.Error(), `invalid parameter "a"`) {
		t.Fatalf("broken config: %v", err)
	}
	if now, _ := os.ReadFile(file); string(now) != string(good) {
		t.Fatalf("file not restored:\n%s", now)
	}
	if got := get(t, ng.URL()); got != "B" {
		t.Fatalf("after a rejected reload nginx should still route to B: %q", got)
	}

	// A failing reload command.
	n.reloadCmd = "sh -c 'echo nginx: [emerg] something; exit 1'"
	if _, err := n.apply(t.Context(), []string{a}); err == nil || !strings.Contains(err.Error(), "[emerg] something") {
		t.Fatalf("failing reload command: %v", err)
	}
	if now, _ := os.ReadFile(file); string(now) != string(good) {
		t.Fatalf("file not restored after a failed reload command:\n%s", now)
	}
}

func httpServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func get(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The same against nginx in a container, told to reload by HUP: baton
// attaches it to its network, a broken configuration is caught by `nginx -t`
// in the container and the file is put back.
func TestNginxControlContainer(t *testing.T) {
	cli := testenv.Docker(t)
	eng, err := dockerctl.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	netName := testenv.Network(t, cli, "", false)
	imgA, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "A"})
	imgB, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "B"})
	a := testenv.RunDemo(t, cli, testenv.RunOpts{Image: imgA, Network: netName})
	b := testenv.RunDemo(t, cli, testenv.RunOpts{Image: imgB, Network: netName})
	ng := testenv.ContainerNginx(t, cli, testenv.NginxOpts{Network: netName, UpstreamFile: "web.conf", InitialServers: []string{testenv.ContainerIP(t, cli, a, netName) + ":8080"}})
	testenv.WaitHTTP(t, ng.URL()+"/", 30*time.Second)
	n := &nginxControl{eng: eng, file: ng.UpstreamFile(), container: ng.Container(), log: slog.New(slog.DiscardHandler), notify: func(string) {}, reloadTimeout: 5 * time.Second}

	svcNet, err := eng.EnsureServiceNetwork(t.Context(), testenv.UniqueName("nginxctl-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeServiceNetwork(t, eng, svcNet) })
	bIP := testenv.ContainerIP(t, cli, b, netName)
	if _, err := n.apply(t.Context(), []string{bIP + ":8080"}, svcNet); err != nil {
		t.Fatal(err)
	}
	if got := get(t, ng.URL()+"/"); !strings.HasPrefix(got, "B ") {
		t.Fatalf("after switching to B: %q", got)
	}
	c, err := cli.ContainerInspect(t.Context(), ng.Container())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.NetworkSettings.Networks[svcNet]; !ok {
		t.Fatalf("nginx container not attached to %s: %v", svcNet, c.NetworkSettings.Networks)
	}
	good, _ := os.ReadFile(ng.UpstreamFile())
	if _, err := n.apply(t.Context(), []string{"not a host:port"}); err == nil || !strings.Contains(err.Error(), "rejects its configuration") {
		t.Fatalf("broken config: %v", err)
	}
	if now, _ := os.ReadFile(ng.UpstreamFile()); string(now) != string(good) {
		t.Fatalf("file not restored:\n%s", now)
	}
	if got := get(t, ng.URL()+"/"); !strings.HasPrefix(got, "B ") {
		t.Fatalf("after a rejected config: %q", got)
	}
}

// removeServiceNetwork detaches whatever a test left on a service network
// and removes it.
func removeServiceNetwork(t *testing.T, eng *dockerctl.Client, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	defer cancel()
	n, err := eng.NetworkInspect(ctx, name, network.InspectOptions{})
	if err != nil {
		return
	}
	for id := range n.Containers {
		_ = eng.NetworkDisconnect(ctx, name, id, true)
	}
	if err := eng.NetworkRemove(ctx, name); err != nil {
		t.Logf("removing network %s: %v", name, err)
	}
}

// A directory on the upstream file's path swapped for a link after baton
// checked the path (someone who can write to the directory, say through an
// nginx container's mount, racing the check): the write follows no link, so
// nothing lands where the link points and the deploy's error is bad input.
// The first apply, along the real directory, is the positive control.
func TestNginxControlRefusesLinkRace(t *testing.T) {
	if testing.Short() {
		t.Skip("needs nginx")
	}
	a := httpServer(t, "A")
	b := httpServer(t, "B")
	base := t.TempDir()
	sub, elsewhere := base+"/sub", base+"/elsewhere"
	for _, d := range []string{sub, elsewhere} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := sub + "/web.conf"
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: file, InitialServers: []string{a}})
	n := &nginxControl{file: file, reloadCmd: ng.ReloadCommand(), log: slog.New(slog.DiscardHandler), notify: func(string) {}, reloadTimeout: 5 * time.Second}
	if _, err := n.apply(t.Context(), []string{b}); err != nil {
		t.Fatalf("positive control: %v", err)
	}
	if got := get(t, ng.URL()); got != "B" {
		t.Fatalf("positive control: nginx serves %q", got)
	}
	n.checked = func() {
		if err := os.Rename(sub, base+"/sub.real"); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(elsewhere, sub); err != nil {
			t.Error(err)
		}
	}
	_, err := n.apply(t.Context(), []string{a})
	if !errors.Is(err, deploy.ErrInvalid) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("write through a link that appeared after the check: %v", err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Fatalf("baton wrote where the link points: %v", entries)
	}
}
