package testenv_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/testenv"
)

// versionVia GETs url and returns the X-Version header, failing on a non-2xx.
func versionVia(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	v := resp.Header.Get("X-Version")
	if !strings.HasPrefix(string(body), v+" GET /") {
		t.Fatalf("GET %s: body %q does not match X-Version %q", url, body, v)
	}
	return v
}

// twoDemos starts healthy v1 and v2 demo containers on a new network.
func twoDemos(t *testing.T, cli *client.Client) (netName, id1, id2 string) {
	t.Helper()
	netName = testenv.Network(t, cli, "", false)
	var ids [2]string
	for i, v := range []string{"v1", "v2"} {
		ref, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: v, HealthCheck: true})
		ids[i] = testenv.RunDemo(t, cli, testenv.RunOpts{Image: ref, Network: netName, Aliases: []string{"app-" + v}})
	}
	for _, id := range ids {
		testenv.WaitHealthy(t, cli, id, 30*time.Second)
	}
	return netName, ids[0], ids[1]
}

func TestHostNginxProxiesAndReloads(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	netName, id1, id2 := twoDemos(t, cli)
	ip1 := testenv.ContainerIP(t, cli, id1, netName)
	ip2 := testenv.ContainerIP(t, cli, id2, netName)

	upstream := t.TempDir() + "/upstream.conf"
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: upstream, InitialServers: []string{ip1 + ":8080"}})
	if !strings.HasPrefix(ng.URL(), "http://127.0.0.1:") || ng.UpstreamFile() != upstream {
		t.Fatalf("URL %q, UpstreamFile %q", ng.URL(), ng.UpstreamFile())
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	kept := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	testenv.WaitHTTP(t, ng.URL()+"/", 10*time.Second)
	if v := versionVia(t, fresh, ng.URL()+"/a"); v != "v1" {
		t.Fatalf("before reload: version %q, want v1", v)
	}
	if v := versionVia(t, kept, ng.URL()+"/a"); v != "v1" {
		t.Fatalf("before reload (keep-alive): version %q, want v1", v)
	}

	// Switch with the argv baton would run, as a separate process.
	if err := testenv.WriteUpstream(upstream, ip2+":8080"); err != nil {
		t.Fatal(err)
	}
	argv := ng.ReloadArgv()
	if strings.Join(argv, " ") != ng.ReloadCommand() || argv[len(argv)-1] != "reload" {
		t.Fatalf("ReloadArgv %q, ReloadCommand %q", argv, ng.ReloadCommand())
	}
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", ng.ReloadCommand(), err, out)
	}
	// Then Reload, which also waits until the old workers are done taking
	// connections: from here on every request sees v2.
	ng.Reload(t)
	for range 5 {
		if v := versionVia(t, fresh, ng.URL()+"/b"); v != "v2" {
			t.Fatalf("after reload: version %q, want v2", v)
		}
	}
	// The kept-alive connection belonged to an old worker, which closed it
	// when idle; Go's transport redials for the GET.
	if v := versionVia(t, kept, ng.URL()+"/b"); v != "v2" {
		t.Fatalf("after reload (keep-alive): version %q, want v2", v)
	}

	ng.SetUpstream(t, ip1+":8080")
	if v := versionVia(t, fresh, ng.URL()+"/c"); v != "v1" {
		t.Fatalf("after SetUpstream: version %q, want v1", v)
	}
	log, err := os.ReadFile(ng.ErrorLog())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "(SIGHUP) received"); n != 3 {
		t.Fatalf("error log shows %d reloads, want 3:\n%s", n, log)
	}
}

func TestHostNginxEmptyUpstreamAnswers502(t *testing.T) {
	t.Parallel()
	ng := testenv.HostNginx(t, testenv.NginxOpts{})
	resp, err := http.Get(ng.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %s, want 502 from the placeholder upstream", resp.Status)
	}
	host, _, err := net.SplitHostPort(strings.TrimPrefix(ng.URL(), "http://"))
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("URL %q: not on 127.0.0.1 (%v)", ng.URL(), err)
	}
}

func TestContainerNginxProxiesByName(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	netName, _, _ := twoDemos(t, cli)
	// By DNS alias: the scratch image resolves through Docker's DNS.
	ng := testenv.ContainerNginx(t, cli, testenv.NginxOpts{Network: netName, InitialServers: []string{"app-v1:8080"}})
	if ng.Container() == "" || !strings.HasPrefix(ng.URL(), "http://127.0.0.1:") {
		t.Fatalf("Container %q, URL %q", ng.Container(), ng.URL())
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	testenv.WaitHTTP(t, ng.URL()+"/", 10*time.Second)
	if v := versionVia(t, fresh, ng.URL()+"/"); v != "v1" {
		t.Fatalf("version %q, want v1", v)
	}
	// The upstream file is written on the host and read through the bind mount.
	ng.SetUpstream(t, "app-v2:8080")
	for range 5 {
		if v := versionVia(t, fresh, ng.URL()+"/"); v != "v2" {
			t.Fatalf("after reload: version %q, want v2", v)
		}
	}
	if argv := ng.ReloadArgv(); argv[0] != "docker" || argv[len(argv)-1] != ng.Container() {
		t.Fatalf("ReloadArgv %q", argv)
	}
	log, err := os.ReadFile(ng.ErrorLog())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "reconfiguring") {
		t.Fatalf("error log shows no reload:\n%s", log)
	}
}
