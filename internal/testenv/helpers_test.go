package testenv_test

import (
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/internal/testenv"
)

func TestDemoImageRunAndCleanup(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	var ref1, id1, id2, netName, ctr string
	// A subtest's cleanups run when it returns: afterwards everything it
	// made must be gone.
	t.Run("make", func(t *testing.T) {
		ref1, id1 = testenv.DemoImage(t, cli, testenv.DemoImageOpts{
			Version:     "v1",
			HealthCheck: true,
			Env:         map[string]string{"WARMUP": "200ms", "STOP_DELAY": "1s"},
			Labels:      map[string]string{"app": "demo app"},
		})
		_, id2 = testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "v2"})
		if id1 == id2 {
			t.Fatalf("v1 and v2 share image ID %s", id1)
		}
		img, err := cli.ImageInspect(t.Context(), ref1)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []string{"VERSION=v1", "WARMUP=200ms", "STOP_DELAY=1s"} {
			if !slices.Contains(img.Config.Env, e) {
				t.Errorf("image env %q lacks %s", img.Config.Env, e)
			}
		}
		if img.Config.Labels[testenv.Label] != "1" || img.Config.Labels["app"] != "demo app" {
			t.Errorf("image labels %v", img.Config.Labels)
		}
		if hc := img.Config.Healthcheck; hc == nil || hc.Interval != testenv.DefaultHealthInterval || !slices.Contains(hc.Test, "-probe") {
			t.Errorf("image healthcheck %+v", hc)
		}
		// No parent: nothing another package builds on, nothing to prune.
		if img.Parent != "" {
			t.Errorf("image %s has parent %s", ref1, img.Parent)
		}

		netName = testenv.Network(t, cli, "", true)
		nw, err := cli.NetworkInspect(t.Context(), netName, network.InspectOptions{})
		if err != nil || !nw.Internal || nw.Labels[testenv.Label] != "1" {
			t.Fatalf("network %s: internal %v, labels %v (%v)", netName, nw.Internal, nw.Labels, err)
		}
		// Published on loopback: the app answers with its version.
		ctr = testenv.RunDemo(t, cli, testenv.RunOpts{Image: ref1, Publish: []string{"127.0.0.1::8080"}})
		testenv.WaitHealthy(t, cli, ctr, 30*time.Second)
		url := "http://" + testenv.HostAddr(t, cli, ctr, "8080") + "/"
		testenv.WaitHTTP(t, url, 10*time.Second)
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if v := resp.Header.Get("X-Version"); v != "v1" {
			t.Fatalf("X-Version %q, want v1", v)
		}
		info, err := cli.ContainerInspect(t.Context(), ctr)
		if err != nil || info.Config.Labels[testenv.Label] != "1" {
			t.Fatalf("container labels %v (%v)", info.Config.Labels, err)
		}
	})
	if t.Failed() {
		return
	}
	for _, id := range []string{id1, id2} {
		if _, err := cli.ImageInspect(t.Context(), id); !cerrdefs.IsNotFound(err) {
			t.Errorf("image %s after cleanup: %v, want not found", id, err)
		}
	}
	if _, err := cli.ContainerInspect(t.Context(), ctr); !cerrdefs.IsNotFound(err) {
		t.Errorf("container %s after cleanup: %v, want not found", ctr, err)
	}
	if _, err := cli.NetworkInspect(t.Context(), netName, network.InspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("network %s after cleanup: %v, want not found", netName, err)
	}
}

func TestBuildBinaryOncePerProcess(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a binary")
	}
	p1 := testenv.BuildBinary(t, "./cmd/demoapp")
	st1, err := os.Stat(p1)
	if err != nil || st1.Mode()&0o111 == 0 {
		t.Fatalf("binary %s: %v, mode %v", p1, err, st1.Mode())
	}
	p2 := testenv.BuildBinary(t, "./cmd/demoapp")
	st2, err := os.Stat(p2)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 || !os.SameFile(st1, st2) {
		t.Fatalf("second build %s differs from first %s: not cached", p2, p1)
	}
}

func TestSmallHelpers(t *testing.T) {
	t.Parallel()
	a, b := testenv.UniqueName("x-"), testenv.UniqueName("x-")
	if a == b || len(a) != len("x-")+8 {
		t.Fatalf("UniqueName gave %q and %q", a, b)
	}
	if p := testenv.FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/cmd/demoapp"); err != nil {
		t.Fatalf("ModuleRoot %s: %v", root, err)
	}
}
