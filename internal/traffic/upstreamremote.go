package traffic

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"
)

// maxUpstreamFile bounds what baton reads back of an upstream file.
const maxUpstreamFile = 1 << 20

// applyThroughContainer is apply for an nginx container on an engine on
// another machine: the upstream file is on that machine, in a directory
// the nginx container bind-mounts, so baton reads and writes it through
// the container with the Docker API (docker cp), which resolves paths
// inside the container and so cannot be led out of what nginx itself
// sees. The reload and its check are the container's, as for a local one.
func (n *nginxControl) applyThroughContainer(ctx context.Context, want []byte) (workerSet, error) {
	inside, err := n.pathInContainer(ctx)
	if err != nil {
		return nil, err
	}
	have, existed, err := n.readInContainer(ctx, inside)
	if err != nil {
		return nil, err
	}
	if existed && bytes.Equal(have, want) {
		return nil, nil
	}
	before, err := n.workers(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.writeInContainer(ctx, inside, want); err != nil {
		return nil, err
	}
	n.log.Debug("upstream file written through the nginx container", "file", n.file, "container", n.container)
	old, err := n.reload(ctx, before)
	if err != nil {
		if existed {
			if werr := n.writeInContainer(ctx, inside, have); werr != nil {
				n.log.Warn("restoring the upstream file", "file", n.file, "error", werr)
			} else if b, werr := n.workers(ctx); werr == nil {
				if _, rerr := n.reload(ctx, b); rerr != nil {
					n.log.Warn("reloading nginx after restoring the upstream file", "file", n.file, "error", rerr)
				}
			}
		}
		return nil, err
	}
	return old, nil
}

// pathInContainer maps the upstream file's path on the engine's machine
// to its path in the nginx container, through the bind mount of a
// directory holding it.
func (n *nginxControl) pathInContainer(ctx context.Context) (string, error) {
	c, err := n.eng.ContainerInspect(ctx, n.container)
	if err != nil {
		return "", fmt.Errorf("nginx container %s: %w", n.container, err)
	}
	best, bestDst := "", ""
	for _, m := range c.Mounts {
		if m.Type != mount.TypeBind || !m.RW {
			continue
		}
		src := path.Clean(m.Source)
		if rel, ok := strings.CutPrefix(n.file, src+"/"); ok && len(src) > len(best) && !strings.Contains(rel, "/..") {
			best, bestDst = src, path.Join(m.Destination, rel)
		}
	}
	if best == "" {
		return "", fmt.Errorf("upstream file %s: nginx container %s bind-mounts no writable directory holding it; on an engine on another machine baton writes the file through that mount (docker run -v %s:/etc/nginx/baton ...)", n.file, n.container, path.Dir(n.file))
	}
	return bestDst, nil
}

func (n *nginxControl) readInContainer(ctx context.Context, inside string) ([]byte, bool, error) {
	rc, _, err := n.eng.CopyFromContainer(ctx, n.container, inside)
	if errdefs.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading upstream file %s in nginx container %s: %w", inside, n.container, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		return nil, false, fmt.Errorf("reading upstream file %s in nginx container %s: %w", inside, n.container, err)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, false, fmt.Errorf("upstream file %s in nginx container %s is not a regular file", inside, n.container)
	}
	b, err := io.ReadAll(io.LimitReader(tr, maxUpstreamFile))
	if err != nil {
		return nil, false, fmt.Errorf("reading upstream file %s in nginx container %s: %w", inside, n.container, err)
	}
	return b, true, nil
}

// writeInContainer puts content at inside as a regular file, mode 0644,
// owned by root. The copy replaces the file whole (docker cp unpacks to
// the path), and nginx reads it only at the reload that follows.
func (n *nginxControl) writeInContainer(ctx context.Context, inside string, content []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: path.Base(inside), Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Now()}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := tw.Write(content); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	err := n.eng.CopyToContainer(ctx, n.container, path.Dir(inside), &buf, container.CopyToContainerOptions{})
	if err != nil {
		if errdefs.IsNotFound(err) {
			err = errors.Join(err, fmt.Errorf("the directory %s must exist in nginx container %s", path.Dir(inside), n.container))
		}
		return fmt.Errorf("writing upstream file %s in nginx container %s: %w", inside, n.container, err)
	}
	return nil
}
