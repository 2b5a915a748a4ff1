package e2e

import (
	"debug/elf"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// TestDynamicBatonMovesTraffic: a baton built the go install way (cgo on, so
// dynamically linked against libc) deploys through its relay. The relay's
// FROM scratch image carries the binary's ELF interpreter and libraries;
// under load, zero requests fail.
func TestDynamicBatonMovesTraffic(t *testing.T) {
	e := newEnv(t)
	e.baton = testenv.BuildBinaryCgo(t, "./cmd/baton")
	interp := elfInterpreter(t, e.baton)
	if interp == "" {
		t.Fatalf("%s has no PT_INTERP: the cgo build is static, so this test would prove nothing", e.baton)
	}
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.ContainerNginx(t, e.cli, testenv.NginxOpts{Network: e.net, UpstreamFile: "web.conf", InitialServers: []string{name + ":8080"}})
	flags := []string{"--nginx-upstream", ng.UpstreamFile(), "--nginx-container", ng.Container(), "--http-probe", "/healthz"}
	e.mustDeploy(append(append([]string{"--image", v2}, flags...), name)...) // set-up: relay, one HUP

	// The relay runs the dynamic binary: its image holds the loader the
	// binary asks for and says where the libraries are.
	relay := e.inspect(traffic.RelayName(name))
	if !relay.State.Running {
		t.Fatalf("relay %s is %s", relay.Name, relay.State.Status)
	}
	img, _, err := e.cli.ImageInspectWithRaw(t.Context(), relay.Image)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(img.Config.Env, func(s string) bool { return strings.HasPrefix(s, "LD_LIBRARY_PATH=/") }) {
		t.Fatalf("relay image %v env %v: no LD_LIBRARY_PATH, not the dynamic binary's image", img.RepoTags, img.Config.Env)
	}

	load := startLoad(t, ng.URL()+"/", 2*time.Minute)
	for _, ref := range []string{v1, v2, v1} {
		r := e.mustDeploy("--image", ref, name)
		if !strings.Contains(r.stdout, "traffic: relay") {
			t.Fatalf("deploy stdout %q: traffic did not go through the relay", r.stdout)
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

// elfInterpreter returns the PT_INTERP of the program at path, "" when it
// is static.
func elfInterpreter(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}
