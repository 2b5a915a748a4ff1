package dockerctl

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
)

// SelfImageRepo is the repository of the images baton builds from its own
// binary to run its relay.
const SelfImageRepo = "baton"

// SelfBinary is where the baton binary sits in its own image (the relay's
// and the kernel path helper's): the one path every exec into them names.
const SelfBinary = "/baton"

// RelayUser is the user the relay runs as: nobody, since it binds only
// unprivileged ports. The image's /state belongs to it, so a new volume
// mounted there (Docker copies the ownership of the image's directory) is
// writable by the relay and by nobody else.
const RelayUser = "65534:65534"

// relayStateDir is the relay's state directory in the image, owned by
// RelayUser.
const relayStateDir = "state"

// EnsureSelfImage returns an image that runs this very baton binary, making
// it FROM scratch if it is not there yet. Nothing is pulled and nothing from
// an image is run: the relay runs exactly the code of the baton that set it
// up. A dynamically linked baton (go build with cgo, as go install makes it
// where a C compiler exists) brings its ELF interpreter and shared libraries
// along, found the way the host's loader finds them. The tag is the hash of
// the image's files, so a rebuilt baton (or a changed libc) gets its own
// image.
func (c *Client) EnsureSelfImage(ctx context.Context) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the baton binary: %w", err)
	}
	img, err := selfImageFor(exe, libResolver{root: "/", libraryPath: filepath.SplitList(os.Getenv("LD_LIBRARY_PATH"))})
	if err != nil {
		return "", err
	}
	ref := img.ref()
	if _, err := c.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	if err := c.importSelfImage(ctx, img, ref); err != nil {
		return "", err
	}
	return ref, nil
}

// selfImage is the relay image's content: a root filesystem as a tar
// stream and the Dockerfile-style changes that make its config.
type selfImage struct {
	rootfs  []byte
	changes []string
}

// ref names the image by the hash of its content.
func (s selfImage) ref() string {
	h := sha256.New()
	h.Write(s.rootfs)
	for _, c := range s.changes {
		h.Write([]byte{0})
		h.Write([]byte(c))
	}
	return SelfImageRepo + ":self-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// selfImageFor lays out the relay image of the binary at exe: the binary at
// /baton and, when it is dynamically linked, its interpreter and libraries
// at the paths its loader asks for, with LD_LIBRARY_PATH naming their
// directories since the image holds no ld.so.cache.
func selfImageFor(exe string, r libResolver) (selfImage, error) {
	deps, err := r.resolve(exe)
	if err != nil {
		return selfImage{}, fmt.Errorf("the baton binary %s is dynamically linked and its libraries cannot all be found for baton's FROM scratch relay image (or build it static: CGO_ENABLED=0, as make build does): %w", exe, err)
	}
	src, _, err := r.hostPath(exe)
	if err != nil {
		return selfImage{}, fmt.Errorf("reading the baton binary %s: %w", exe, err)
	}
	files := []elfFile{{Path: SelfBinary, Src: src}}
	if deps.Interp.Path != "" {
		files = append(files, deps.Interp)
	}
	files = append(files, deps.Libs...)
	rootfs, err := rootfsTar(files)
	if err != nil {
		return selfImage{}, err
	}
	changes := []string{`ENTRYPOINT ["` + SelfBinary + `"]`, "LABEL baton.managed=true"}
	if dirs := deps.LibDirs(); len(dirs) > 0 {
		changes = append(changes, "ENV LD_LIBRARY_PATH="+strings.Join(dirs, ":"))
	}
	return selfImage{rootfs: rootfs, changes: changes}, nil
}

// rootfsTar writes files, their parent directories and the relay's state
// directory as a tar stream with fixed metadata, so the same files always
// make the same bytes (and tag).
func rootfsTar(files []elfFile) ([]byte, error) {
	var dirs []string
	for _, f := range files {
		for d := path.Dir(f.Path); d != "/" && !slices.Contains(dirs, d); d = path.Dir(d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs) // a parent sorts before its children
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("building the relay image: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: relayStateDir + "/", Mode: 0o700, Uid: 65534, Gid: 65534, ModTime: epoch}); err != nil {
		return nil, fmt.Errorf("building the relay image: %w", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f.Src)
		if err != nil {
			return nil, fmt.Errorf("building the relay image: reading %s: %w", f.Src, err)
		}
		// Executable for all: the kernel needs that of the binary and of the
		// interpreter, and the relay may run as a user other than root.
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("building the relay image: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("building the relay image: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("building the relay image: %w", err)
	}
	return buf.Bytes(), nil
}

// importSelfImage imports the image and tags it ref. The import goes to a
// tag of its own first: of two batons making the image at once, the second
// finds ref taken and drops its copy, so no untagged copy stays behind. An
// import (unlike a build) runs no builder, whose cache lookups race with
// image removals elsewhere on the engine.
func (c *Client) importSelfImage(ctx context.Context, img selfImage, ref string) error {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	tmp := SelfImageRepo + ":import-" + hex.EncodeToString(b[:])
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(img.rootfs), SourceName: "-"}, tmp, image.ImportOptions{Changes: img.changes})
	if err != nil {
		return fmt.Errorf("importing image %s: %w", ref, err)
	}
	err = readProgress(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("importing image %s: %w", ref, err)
	}
	if _, err := c.ImageInspect(ctx, ref); errdefs.IsNotFound(err) {
		err = c.ImageTag(ctx, tmp, ref)
		if err != nil {
			err = fmt.Errorf("tagging image %s: %w", ref, err)
		}
	} else if err != nil {
		err = fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	// Untag only, never pruning: removing a tag must not take anything else
	// with it. When ref was taken meanwhile this removes the copy.
	if _, rerr := c.ImageRemove(context.WithoutCancel(ctx), tmp, image.RemoveOptions{}); rerr != nil && !errdefs.IsNotFound(rerr) && err == nil {
		err = fmt.Errorf("removing the temporary tag %s: %w", tmp, rerr)
	}
	return err
}

// readProgress reads an engine progress stream to its end; failures come
// inside it.
func readProgress(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
	}
}
