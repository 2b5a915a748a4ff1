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
	// against /healthz; the durations default to DefaultHealthInterval,
	// 10s and 10s.
	HealthCheck       bool
	HealthInterval    time.Duration
	HealthTimeout     time.Duration
	HealthStartPeriod time.Duration
	HealthRetries     int // default 3

	Keep bool // leave the image when the test ends
}

// DefaultHealthInterval is the demo image's HEALTHCHECK interval. Each
// check is a docker exec (dockerd, containerd, a shim and runc): measured
// on the 2-core test machine, four containers checked every 500 ms kept
// half of its CPU busy, while the tests keep several such containers up
// for their whole run. Every 2 s costs a quarter of that; a deploy waits
// for the first check after warm-up, so up to 2 s, which the benchmark,
// measuring deploy time, shortens (its images set 500 ms).
const DefaultHealthInterval = 2 * time.Second

// DemoImage makes a FROM scratch image holding cmd/demoapp, tags it and
// returns the reference and image ID. It imports the image (docker import)
// rather than building it: the image has no parents and shares no builder
// cache with anything, and each call gets its own image ID (a unique build
// label), so removing one test's image never takes anything from under
// another test, in this package or one running beside it.
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
	changes, err := demoChanges(opts, lbl)
	if err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	id, err = importImage(ctx, cli, ref, changes, []tarEntry{{name: "demoapp", mode: 0o755, data: binData}})
	if err != nil {
		t.Fatalf("%v", err)
	}
	if !opts.Keep {
		t.Cleanup(func() { removeImage(t, cli, ref) })
	}
	return ref, id
}

// demoChanges returns the image config as Dockerfile instructions for
// docker import.
func demoChanges(opts DemoImageOpts, lbl map[string]string) ([]string, error) {
	changes := []string{"EXPOSE 8080", `ENTRYPOINT ["/demoapp"]`}
	if opts.HealthCheck {
		interval := orDuration(opts.HealthInterval, DefaultHealthInterval)
		timeout := orDuration(opts.HealthTimeout, 10*time.Second) // generous: a busy machine slows the check
		start := orDuration(opts.HealthStartPeriod, 10*time.Second)
		retries := opts.HealthRetries
		if retries <= 0 {
			retries = 3
		}
		changes = append(changes, fmt.Sprintf("HEALTHCHECK --interval=%s --timeout=%s --start-period=%s --retries=%d CMD [\"/demoapp\",\"-probe\",\"http://127.0.0.1:8080/healthz\"]",
			interval, timeout, start, retries))
	}
	env := map[string]string{"VERSION": opts.Version}
	maps.Copy(env, opts.Env)
	line, err := keyValues(env)
	if err != nil {
		return nil, fmt.Errorf("env: %w", err)
	}
	changes = append(changes, "ENV"+line)
	if line, err = keyValues(lbl); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return append(changes, "LABEL"+line), nil
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
	name string // path in the image, without a leading slash
	mode int64
	data []byte
	dir  bool
}

// importImage imports a root filesystem made of entries as tag, with the
// config changes (Dockerfile instructions), and returns the image ID. An
// import, unlike a classic build, looks at no other image: it takes no
// cached step that another test's cleanup could be removing, and its image
// has no parents to prune.
func importImage(ctx context.Context, cli *client.Client, tag string, changes []string, entries []tarEntry) (string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if e.dir {
			hdr.Typeflag, hdr.Name, hdr.Size = tar.TypeDir, strings.TrimSuffix(e.name, "/")+"/", 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("image %s: rootfs: %w", tag, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return "", fmt.Errorf("image %s: rootfs: %w", tag, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("image %s: rootfs: %w", tag, err)
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, tag, image.ImportOptions{Changes: changes})
	if err != nil {
		return "", fmt.Errorf("image %s: import: %w", tag, err)
	}
	err = ReadJSONStream(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("image %s: import: %w", tag, err)
	}
	info, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("image %s: inspect after import: %w", tag, err)
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

// removeImage removes a tag the test made; when it was the image's last,
// the image goes too. Force, because code under test may have left a
// container on it. Never PruneChildren: parents are the cache other
// packages' builds may be using at this moment (a pruned parent fails such
// a build with "failed to get digest ...: no such file or directory").
func removeImage(t TB, cli *client.Client, ref string) {
	ctx, cancel := cleanupContext(t)
	defer cancel()
	_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: false})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("image %s: remove: %v", ref, err)
	}
}
