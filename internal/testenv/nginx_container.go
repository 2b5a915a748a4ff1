package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
)

// nginxImages holds the nginx image per engine: tests that start engines of
// their own (contexts, ssh, several hosts) need it imported there too, not
// only into the engine that asked first.
var nginxImages struct {
	mu     sync.Mutex
	byHost map[string]*nginxImageOnce
}

type nginxImageOnce struct {
	once sync.Once
	ref  string
	err  error
}

// NginxImage returns a FROM scratch image holding the host's /usr/sbin/nginx
// and the libraries ldd lists for it, imported once per process and engine
// (again if that engine lost it).
// Its tag is derived from those files' contents, so later runs reuse it; it
// is labelled baton.test=1 but, being shared, not removed.
func NginxImage(t TB, cli *client.Client) string {
	t.Helper()
	nginxImages.mu.Lock()
	if nginxImages.byHost == nil {
		nginxImages.byHost = map[string]*nginxImageOnce{}
	}
	img := nginxImages.byHost[cli.DaemonHost()]
	if img == nil {
		img = &nginxImageOnce{}
		nginxImages.byHost[cli.DaemonHost()] = img
	}
	nginxImages.mu.Unlock()
	img.once.Do(func() {
		// Shared by later callers: the first test's end must not cancel it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
		defer cancel()
		img.ref, img.err = buildNginxImage(ctx, cli)
	})
	if img.err != nil {
		t.Fatalf("%v", img.err)
	}
	// An engine started again at the same socket with a fresh data root
	// (a test that starts its own engines, run with -count=2) no longer
	// has it: make it again there (the build is safe to repeat).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, img.ref); cerrdefs.IsNotFound(err) {
		ref, err := buildNginxImage(ctx, cli)
		if err != nil {
			t.Fatalf("%v", err)
		}
		return ref
	}
	return img.ref
}

func buildNginxImage(ctx context.Context, cli *client.Client) (string, error) {
	const bin = "/usr/sbin/nginx"
	libs, err := sharedLibraries(ctx, bin)
	if err != nil {
		return "", fmt.Errorf("nginx image: %w", err)
	}
	var entries []tarEntry
	for _, d := range []string{"etc", "etc/nginx", "run", "var", "var/lib", "var/lib/nginx", "var/log", "var/log/nginx"} {
		entries = append(entries, tarEntry{name: d, mode: 0o755, dir: true})
	}
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		entries = append(entries, tarEntry{name: "var/lib/nginx/" + d, mode: 0o700, dir: true})
	}
	entries = append(entries, tarEntry{name: "tmp", mode: 0o1777, dir: true})
	h := sha256.New()
	for _, p := range append([]string{bin}, libs...) {
		// Copy what a symlink points at, to the path the loader asks for.
		data, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("nginx image: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", p, len(data))
		h.Write(data)
		entries = append(entries, tarEntry{name: strings.TrimPrefix(p, "/"), mode: 0o755, data: data})
	}
	etc := map[string]string{
		"passwd":        "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
		"group":         "root:x:0:\nnogroup:x:65534:\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
	}
	for _, name := range []string{"passwd", "group", "nsswitch.conf"} {
		entries = append(entries, tarEntry{name: "etc/" + name, mode: 0o644, data: []byte(etc[name])})
		fmt.Fprintf(h, "%s %s\n", name, etc[name])
	}
	// STOPSIGNAL is not an import change on Engine 20.10: the container
	// sets it (SIGQUIT, nginx's graceful stop).
	changes := []string{"EXPOSE 80", `ENTRYPOINT ["/usr/sbin/nginx", "-g", "daemon off;"]`, "LABEL " + Label + `="1"`}
	h.Write([]byte(strings.Join(changes, "\n")))
	ref := "baton-test/nginx:" + hex.EncodeToString(h.Sum(nil))[:16]
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("image %s: inspect: %w", ref, err)
	}
	// Import under a tag of this process first: of two test processes
	// making the image at once, the second finds ref taken and drops its
	// copy, so no untagged copy stays behind.
	tmp := "baton-test/nginx:import-" + UniqueName("")
	if _, err := importImage(ctx, cli, tmp, changes, entries); err != nil {
		return "", err
	}
	_, err = cli.ImageInspect(ctx, ref)
	switch {
	case cerrdefs.IsNotFound(err):
		if err = cli.ImageTag(ctx, tmp, ref); err != nil {
			err = fmt.Errorf("image %s: tag: %w", ref, err)
		}
	case err != nil:
		err = fmt.Errorf("image %s: inspect: %w", ref, err)
	}
	if _, rerr := cli.ImageRemove(ctx, tmp, image.RemoveOptions{}); rerr != nil && err == nil {
		err = fmt.Errorf("image %s: untag: %w", tmp, rerr)
	}
	if err != nil {
		return "", err
	}
	return ref, nil
}

// sharedLibraries returns the paths `ldd bin` resolves, the dynamic loader
// included.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x…)"; linux-vdso has no file.
		line := strings.TrimSpace(sc.Text())
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		path, _, _ := strings.Cut(line, " ")
		if strings.HasPrefix(path, "/") {
			libs = append(libs, path)
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries in %q", bin, out)
	}
	return libs, nil
}

// ContainerNginx runs NginxImage with its config dir bind-mounted from a
// host temp dir at /etc/nginx, listening on :80 published on 127.0.0.1, and
// removes it in a cleanup. The upstream file is /etc/nginx/baton/<file>
// inside, UpstreamFile() on the host; the error log is
// /etc/nginx/log/error.log inside, ErrorLog() on the host.
func ContainerNginx(t TB, cli *client.Client, opts NginxOpts) *Nginx {
	t.Helper()
	image := opts.Image
	if image == "" {
		image = NginxImage(t, cli)
	}
	dir := t.TempDir()
	for _, d := range []string{"baton", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("nginx: %v", err)
		}
	}
	file := orString(opts.UpstreamFile, "upstream.conf")
	if strings.Contains(file, "/") {
		t.Fatalf("nginx: ContainerNginx takes a file name, not a path, as UpstreamFile (%q)", file)
	}
	n := &Nginx{
		cli:          cli,
		container:    UniqueName("baton-test-nginx-"),
		upstreamFile: filepath.Join(dir, "baton", file),
		errorLog:     filepath.Join(dir, "log", "error.log"),
	}
	if err := prepareUpstream(n.upstreamFile, opts.InitialServers); err != nil {
		t.Fatalf("nginx: %v", err)
	}
	conf := nginxConf{
		Workers:  orInt(opts.WorkerProcesses, 2),
		PID:      "/run/nginx.pid",
		ErrorLog: "/etc/nginx/log/error.log",
		Listen:   "80",
		Upstream: "/etc/nginx/baton/" + file,
		Location: orString(opts.Location, DefaultLocation),
		HTTP:     opts.HTTP,

		UpstreamExtra: opts.Upstream,
	}
	if opts.AccessLog {
		conf.AccessLog = "/etc/nginx/log/access.log"
	}
	b, err := conf.render()
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), b, 0o644); err != nil {
		t.Fatalf("nginx: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	hostCfg := &container.HostConfig{
		Binds: []string{dir + ":/etc/nginx"},
		// HostPort "" lets the daemon pick a free port: no race.
		PortBindings: nat.PortMap{"80/tcp": {{HostIP: orString(opts.PublishIP, "127.0.0.1"), HostPort: ""}}},
	}
	var netCfg *network.NetworkingConfig
	if opts.Network != "" {
		hostCfg.NetworkMode = container.NetworkMode(opts.Network)
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{opts.Network: {}}}
	}
	created, err := cli.ContainerCreate(ctx, &container.Config{
		Image:        image,
		Labels:       labels(nil),
		ExposedPorts: nat.PortSet{"80/tcp": {}},
		StopSignal:   "SIGQUIT",
	}, hostCfg, netCfg, nil, n.container)
	if err != nil {
		t.Fatalf("container %s: create: %v", n.container, err)
	}
	n.id = created.ID
	t.Cleanup(func() { removeContainer(t, cli, created.ID) })
	if err := startAttaching(t, cli, created.ID); err != nil {
		t.Fatalf("container %s: start: %v", n.container, err)
	}
	n.url = "http://" + HostAddr(t, cli, created.ID, "80/tcp")
	if err := waitHTTP(ctx, n.url+"/", 20*time.Second, answersAsNginx); err != nil {
		state := "unknown"
		if info, ierr := cli.ContainerInspect(ctx, created.ID); ierr == nil && info.State != nil {
			state = fmt.Sprintf("%s, exit code %d", info.State.Status, info.State.ExitCode)
		}
		t.Fatalf("container %s (%s): %v; error log:\n%s", n.container, state, err, tail(n.errorLog, 2048))
	}
	return n
}

// reloadContainer sends SIGHUP after checking the config inside the
// container, then waits for the new workers as a host reload does.
func (n *Nginx) reloadContainer(ctx context.Context) error {
	if out, code, err := execIn(ctx, n.cli, n.id, "/usr/sbin/nginx", "-t", "-q"); err != nil {
		return fmt.Errorf("container %s: config test: %w", n.container, err)
	} else if code != 0 {
		return fmt.Errorf("container %s: config test: exit code %d\n%s", n.container, code, out)
	}
	info, err := n.cli.ContainerInspect(ctx, n.id)
	if err != nil {
		return fmt.Errorf("container %s: inspect: %w", n.container, err)
	}
	if info.State == nil || !info.State.Running {
		return fmt.Errorf("container %s: not running", n.container)
	}
	master := info.State.Pid
	before, err := nginxWorkers(master)
	if err != nil {
		return fmt.Errorf("container %s: %w", n.container, err)
	}
	if err := n.cli.ContainerKill(ctx, n.id, "HUP"); err != nil {
		return fmt.Errorf("container %s: reload: %w", n.container, err)
	}
	if err := waitReloaded(ctx, master, before); err != nil {
		return fmt.Errorf("container %s: %w; error log:\n%s", n.container, err, tail(n.errorLog, 2048))
	}
	return nil
}

// execIn runs a command in a container and returns its output and exit code.
func execIn(ctx context.Context, cli *client.Client, id string, cmd ...string) (string, int, error) {
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", 0, fmt.Errorf("exec %v: %w", cmd, err)
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("exec %v: attach: %w", cmd, err)
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		return "", 0, fmt.Errorf("exec %v: output: %w", cmd, err)
	}
	res, err := cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return "", 0, fmt.Errorf("exec %v: inspect: %w", cmd, err)
	}
	return out.String(), res.ExitCode, nil
}

// startAttaching starts a container, trying again when the engine could not
// attach it to a swarm's attachable overlay network in time: seen right
// after another overlay network's services were torn down on the same
// single-node swarm (the second swarm test's nginx), while the same start
// alone succeeds. Other errors fail at once.
func startAttaching(t TB, cli *client.Client, id string) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		err = cli.ContainerStart(ctx, id, container.StartOptions{})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "attaching to network failed") {
			return err
		}
		t.Logf("container %s: start: %v; trying again", id, err)
		select {
		case <-t.Context().Done():
			return err
		case <-time.After(5 * time.Second):
		}
	}
	return err
}
