package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// DemoImageOpts says what DemoImage builds.
type DemoImageOpts struct {
	Repo    string            // default "baton-test/demoapp"
	Tag     string            // default "<Version>-<random>"
	Version string            // ENV VERSION, what the app reports (default "v1")
	Env     map[string]string // more ENV lines: WARMUP, MODE, STOP_DELAY, LISTEN_AFTER_WARMUP…
	Labels  map[string]string // image labels, added to baton.test=1

	// HealthCheck adds a HEALTHCHECK that runs the binary's -probe mode
	// against /healthz; the durations default to 500ms, 2s and 10s.
	HealthCheck       bool
	HealthInterval    time.Duration
	HealthTimeout     time.Duration
	HealthStartPeriod time.Duration
	HealthRetries     int // default 3

	Keep bool // leave the image when the test ends
}

// DemoImage builds a FROM scratch image holding cmd/demoapp, tags it and
// returns the reference and image ID. Each call gets its own image ID (a
// unique build label), so removing one test's image never pulls another's
// out from under it.
func DemoImage(t TB, cli *client.Client, opts DemoImageOpts) (ref, id string) {
	t.Helper()
	if opts.Version == "" {
		opts.Version = "v1"
	}
	if opts.Repo == "" {
		opts.Repo = "baton-test/demoapp"
	}
	if opts.Tag == "" {
		opts.Tag = UniqueName(tagSafe(opts.Version) + "-")
	}
	ref = opts.Repo + ":" + opts.Tag
	bin := BuildBinary(t, "./cmd/demoapp")
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	lbl := labels(opts.Labels)
	lbl[Label+".build"] = UniqueName("")
	dockerfile, err := demoDockerfile(opts, lbl)
	if err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	id, err = buildImage(ctx, cli, ref, dockerfile, []tarEntry{{name: "demoapp", mode: 0o755, data: binData}})
	if err != nil {
		t.Fatalf("%v", err)
	}
	if !opts.Keep {
		t.Cleanup(func() { removeImage(t, cli, ref) })
	}
	return ref, id
}

// demoDockerfile puts what most images share first, so the classic builder
// takes it from its cache and, per image, runs only the last two steps (each
// step costs a container commit, about half a second).
func demoDockerfile(opts DemoImageOpts, lbl map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString("FROM scratch\nCOPY demoapp /demoapp\nEXPOSE 8080\nENTRYPOINT [\"/demoapp\"]\n")
	if opts.HealthCheck {
		interval := orDuration(opts.HealthInterval, 500*time.Millisecond)
		timeout := orDuration(opts.HealthTimeout, 10*time.Second) // generous: a busy machine slows the check
		start := orDuration(opts.HealthStartPeriod, 10*time.Second)
		retries := opts.HealthRetries
		if retries <= 0 {
			retries = 3
		}
		fmt.Fprintf(&b, "HEALTHCHECK --interval=%s --timeout=%s --start-period=%s --retries=%d CMD [\"/demoapp\",\"-probe\",\"http://127.0.0.1:8080/healthz\"]\n",
			interval, timeout, start, retries)
	}
	env := map[string]string{"VERSION": opts.Version}
	maps.Copy(env, opts.Env)
	line, err := keyValues(env)
	if err != nil {
		return "", fmt.Errorf("env: %w", err)
	}
	fmt.Fprintf(&b, "ENV%s\n", line)
	if line, err = keyValues(lbl); err != nil {
		return "", fmt.Errorf("labels: %w", err)
	}
	fmt.Fprintf(&b, "LABEL%s\n", line)
	return b.String(), nil
}

// keyValues renders m as ` k="v"…` for one ENV or LABEL instruction.
func keyValues(m map[string]string) (string, error) {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if k == "" || strings.ContainsAny(k, " \t\n\r=\"\\$") || strings.ContainsAny(v, "\n\r") {
			return "", fmt.Errorf("%q=%q: not expressible in a Dockerfile", k, v)
		}
		fmt.Fprintf(&b, " %s=%s", k, dockerfileQuote(v))
	}
	return b.String(), nil
}

func dockerfileQuote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(v) + `"`
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// tagSafe maps s to characters allowed in an image tag.
func tagSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

type tarEntry struct {
	name string // path in the build context, without a leading slash
	mode int64
	data []byte
	dir  bool
}

// buildImage builds a context made of the Dockerfile and entries with the
// classic builder and returns the image ID of tag. Labels go in the
// Dockerfile: the build option would cost a step of its own.
func buildImage(ctx context.Context, cli *client.Client, tag, dockerfile string, entries []tarEntry) (string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries = append([]tarEntry{{name: "Dockerfile", mode: 0o644, data: []byte(dockerfile)}}, entries...)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if e.dir {
			hdr.Typeflag, hdr.Name, hdr.Size = tar.TypeDir, strings.TrimSuffix(e.name, "/")+"/", 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("image %s: context: %w", tag, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return "", fmt.Errorf("image %s: context: %w", tag, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("image %s: context: %w", tag, err)
	}
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("image %s: build: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := ReadJSONStream(resp.Body); err != nil {
		return "", fmt.Errorf("image %s: build: %w", tag, err)
	}
	info, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("image %s: inspect after build: %w", tag, err)
	}
	return info.ID, nil
}

// ReadJSONStream reads a build, push or pull progress stream to its end. The
// engine answers 200 and reports failures inside the stream, so an error
// message there is the operation's error.
func ReadJSONStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	var tail []string // the last lines of output, to show with an error
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading progress stream: %w", err)
		}
		if msg.Error != nil {
			if len(tail) > 0 {
				return fmt.Errorf("%s (output before it:\n%s)", msg.Error.Message, strings.Join(tail, ""))
			}
			return errors.New(msg.Error.Message)
		}
		line := msg.Stream
		if line == "" && msg.Status != "" {
			line = msg.Status + " " + msg.ID + "\n"
		}
		if line != "" {
			tail = append(tail, line)
			if len(tail) > 20 {
				tail = tail[1:]
			}
		}
	}
}

// removeImage removes a tag; when it was the image's last, the image and its
// untagged parents go too. Force, because code under test may have left a
// container on it.
func removeImage(t TB, cli *client.Client, ref string) {
	ctx, cancel := cleanupContext(t)
	defer cancel()
	_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("image %s: remove: %v", ref, err)
	}
}
