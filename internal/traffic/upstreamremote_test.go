package traffic

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
)

// copyEngine is an nginx container's filesystem as docker cp sees it,
// and its mounts; nothing else of Engine is used.
type copyEngine struct {
	Engine
	mounts []container.MountPoint
	files  map[string][]byte // paths inside the container
	copied []string          // directories CopyToContainer wrote into
}

func (f *copyEngine) ContainerInspect(context.Context, string) (container.InspectResponse, error) {
	return container.InspectResponse{Mounts: f.mounts}, nil
}

func (f *copyEngine) CopyFromContainer(_ context.Context, _, src string) (io.ReadCloser, container.PathStat, error) {
	b, ok := f.files[src]
	if !ok {
		return nil, container.PathStat{}, errdefs.NotFound(io.EOF)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "x", Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(b)
	_ = tw.Close()
	return io.NopCloser(&buf), container.PathStat{}, nil
}

func (f *copyEngine) CopyToContainer(_ context.Context, _, dst string, content io.Reader, _ container.CopyToContainerOptions) error {
	tr := tar.NewReader(content)
	h, err := tr.Next()
	if err != nil {
		return err
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return err
	}
	f.files[dst+"/"+h.Name] = b
	f.copied = append(f.copied, dst)
	return nil
}

// TestUpstreamFileThroughContainer: on an engine on another machine the
// upstream file is read and written inside the nginx container, at the
// path its bind mount gives the file, and never on this machine; a file
// outside every writable bind mount is refused with the fix named.
func TestUpstreamFileThroughContainer(t *testing.T) {
	eng := &copyEngine{
		mounts: []container.MountPoint{
			{Type: mount.TypeBind, Source: "/srv/nginx", Destination: "/etc/nginx", RW: true},
			{Type: mount.TypeBind, Source: "/srv/nginx/baton", Destination: "/etc/nginx/conf.d/baton", RW: true},
			{Type: mount.TypeBind, Source: "/srv/ro", Destination: "/ro", RW: false},
			{Type: mount.TypeVolume, Source: "/var/lib/docker/volumes/x/_data", Destination: "/data", RW: true},
		},
		files: map[string][]byte{},
	}
	n := &nginxControl{eng: eng, container: "ngx", file: "/srv/nginx/baton/web.conf", throughContainer: true, log: slog.New(slog.DiscardHandler)}
	inside, err := n.pathInContainer(t.Context())
	if err != nil || inside != "/etc/nginx/conf.d/baton/web.conf" {
		t.Fatalf("path in container: %q, %v; want the longest mount's /etc/nginx/conf.d/baton/web.conf", inside, err)
	}
	if err := n.writeInContainer(t.Context(), inside, []byte("server a:1;\n")); err != nil {
		t.Fatal(err)
	}
	got, existed, err := n.readInContainer(t.Context(), inside)
	if err != nil || !existed || string(got) != "server a:1;\n" {
		t.Fatalf("read back: %q existed=%v %v", got, existed, err)
	}
	if len(eng.copied) != 1 || eng.copied[0] != "/etc/nginx/conf.d/baton" {
		t.Errorf("copied into %v, want the mounted directory", eng.copied)
	}
	// A missing file is not an error: the first deploy writes it.
	if _, existed, err := n.readInContainer(t.Context(), "/etc/nginx/conf.d/baton/other.conf"); err != nil || existed {
		t.Errorf("missing file: existed=%v %v", existed, err)
	}
	for _, file := range []string{"/srv/ro/web.conf", "/var/lib/docker/volumes/x/_data/web.conf", "/etc/nginx/baton/web.conf", "/srv/nginxother/web.conf"} {
		n.file = file
		if _, err := n.pathInContainer(t.Context()); err == nil || !strings.Contains(err.Error(), "bind-mounts no writable directory holding it") {
			t.Errorf("%s: got %v, want a refusal naming the missing bind mount", file, err)
		}
	}
}
