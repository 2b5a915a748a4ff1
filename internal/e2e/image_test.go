package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/baton-sh/baton/internal/testenv"
)

// TestBatonImage builds the repository's Dockerfile around a static baton
// binary and runs it: it starts, and with the Docker socket mounted it
// reaches the engine (a watch pass over no containers, exit 0) from a FROM
// scratch image.
func TestBatonImage(t *testing.T) {
	cli := testenv.Docker(t)
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(testenv.BuildBinary(t, "./cmd/baton"))
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"bin/baton", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tag := "baton-test/baton:" + testenv.UniqueName("")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// NoCache: the build neither looks through other images for its cache
	// (and so cannot trip over another package removing one) nor leaves
	// steps for others to take from it. Its intermediate images are then
	// this build's own, and pruning them with the tag removes only what
	// this test made; no other test builds with the classic builder.
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
		NoCache: true, Labels: map[string]string{testenv.Label: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	err = testenv.ReadJSONStream(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("docker build: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		_, _ = cli.ImageRemove(cctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})

	run := func(host *container.HostConfig, args ...string) (int64, string) {
		t.Helper()
		name := testenv.UniqueName("baton-test-image-")
		c, err := cli.ContainerCreate(ctx, &container.Config{Image: tag, Cmd: args, Labels: map[string]string{testenv.Label: "1"}}, host, nil, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
			defer cancel()
			_ = cli.ContainerRemove(cctx, c.ID, container.RemoveOptions{Force: true})
		})
		waitC, errC := cli.ContainerWait(ctx, c.ID, container.WaitConditionNextExit)
		if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		var code int64
		select {
		case w := <-waitC:
			code = w.StatusCode
		case err := <-errC:
			t.Fatal(err)
		}
		rc, err := cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var out bytes.Buffer
		if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
			t.Fatal(err)
		}
		t.Logf("docker run %s %v: exit %d\n%s", tag, args, code, out.String())
		return code, out.String()
	}

	if code, out := run(&container.HostConfig{}, "--version"); code != 0 || !strings.Contains(out, "baton version") {
		t.Fatalf("baton --version in the image: exit %d: %s", code, out)
	}
	// The socket of the engine under test (DOCKER_HOST may name another
	// than the default, as for the current engine's pass).
	sock, ok := strings.CutPrefix(cli.DaemonHost(), "unix://")
	if !ok {
		t.Fatalf("the engine under test is not on a unix socket (%s): baton's image needs one to mount", cli.DaemonHost())
	}
	host := &container.HostConfig{
		NetworkMode: "host",
		Binds:       []string{sock + ":/var/run/docker.sock", t.TempDir() + ":/var/lib/baton"},
	}
	if code, out := run(host, "watch", "--once", "--scope", testenv.UniqueName("nothing-")); code != 0 || !strings.Contains(out, "stopped") {
		t.Fatalf("baton watch --once in the image: exit %d: %s", code, out)
	}
	if code, out := run(host, "history"); code != 0 || !strings.Contains(out, "no deploys in the journal yet") {
		t.Fatalf("baton history in the image: exit %d: %s", code, out)
	}
}
