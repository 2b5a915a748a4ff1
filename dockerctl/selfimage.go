package dockerctl

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
)

// SelfImageRepo is the repository of the images baton builds from its own
// binary to run its relay.
const SelfImageRepo = "baton"

// EnsureSelfImage returns an image that runs this very baton binary, building
// it FROM scratch if it is not there yet. Nothing is pulled: the relay runs
// exactly the code of the baton that set it up, and the tag is the binary's
// hash, so a rebuilt baton gets its own image.
func (c *Client) EnsureSelfImage(ctx context.Context) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the baton binary: %w", err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		return "", fmt.Errorf("reading the baton binary %s: %w", exe, err)
	}
	sum := sha256.Sum256(bin)
	ref := SelfImageRepo + ":self-" + hex.EncodeToString(sum[:])[:12]
	if _, err := c.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	if err := checkStatic(exe); err != nil {
		return "", err
	}
	buildCtx, err := selfBuildContext(bin)
	if err != nil {
		return "", err
	}
	resp, err := c.ImageBuild(ctx, buildCtx, build.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{"baton.managed": "true"},
	})
	if err != nil {
		return "", fmt.Errorf("building image %s: %w", ref, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("building image %s: %w", ref, err)
		}
		if m.Error != nil {
			return "", fmt.Errorf("building image %s: %s", ref, m.Error.Message)
		}
	}
	return ref, nil
}

// checkStatic refuses a dynamically linked binary, which cannot run in a
// FROM scratch image.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("reading the baton binary %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("the baton binary %s is dynamically linked, so it cannot run in baton's FROM scratch relay container; build it with CGO_ENABLED=0 (make build does)", path)
		}
	}
	return nil
}

// RelayUser is the user the relay runs as: nobody, since it binds only
// unprivileged ports. The image's /state belongs to it, so a new volume
// mounted there (Docker copies the ownership of the image's directory) is
// writable by the relay and by nobody else.
const RelayUser = "65534:65534"

func selfBuildContext(bin []byte) (io.Reader, error) {
	dockerfile := []byte("FROM scratch\nCOPY baton /baton\nCOPY --chown=" + RelayUser + " state /state\nENTRYPOINT [\"/baton\"]\n")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "state/", Typeflag: tar.TypeDir, Mode: 0o700}); err != nil {
		return nil, fmt.Errorf("building the relay image context: %w", err)
	}
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"baton", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return nil, fmt.Errorf("building the relay image context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("building the relay image context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("building the relay image context: %w", err)
	}
	return &buf, nil
}
