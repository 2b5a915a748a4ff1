package e2e

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/baton-sh/baton/internal/testenv"
)

// composeTools are the compose tools every compose test runs with: Compose
// v2 (docker compose, built by scripts/ensure-compose-v2) and Debian's v1.
var composeTools = []struct {
	name string
	argv []string
	sep  string // container name separator
}{
	{"v2", []string{"docker", "compose"}, "-"},
	{"v1", []string{"docker-compose"}, "_"},
}

// project is one compose example copied into a temp dir and brought up
// with one compose tool and locally built images.
type project struct {
	t     *testing.T
	e     *env
	argv  []string
	sep   string
	name  string
	dir   string // the example's directory (holds docker-compose.yml)
	files []string
	env   []string
	port  int
}

// upExample copies compose-examples/<example> (and the shared nginx.conf)
// to a temp dir and runs `up -d` with images from images (env var -> ref).
func upExample(t *testing.T, e *env, tool int, example string, images map[string]string) *project {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	copyFile(t, filepath.Join(root, "compose-examples", "nginx.conf"), filepath.Join(tmp, "nginx.conf"))
	dir := filepath.Join(tmp, example)
	for _, f := range []string{"docker-compose.yml", "test.override.yml", "baton/web.conf"} {
		copyFile(t, filepath.Join(root, "compose-examples", example, f), filepath.Join(dir, f))
	}
	p := &project{
		t: t, e: e, argv: composeTools[tool].argv, sep: composeTools[tool].sep,
		name:  "bt" + strings.ToLower(strings.TrimPrefix(testenv.UniqueName(""), "-")),
		dir:   dir,
		files: []string{"docker-compose.yml", "test.override.yml"},
		port:  testenv.FreePort(t),
	}
	p.env = append(p.env, "HTTP_PORT="+itoa(p.port), "BATON_TEST_NGINX_IMAGE="+testenv.NginxImage(t, e.cli))
	for k, v := range images {
		p.env = append(p.env, k+"="+v)
	}
	t.Cleanup(func() {
		out, _ := p.composeErr("down", "--volumes", "--remove-orphans", "-t", "1")
		t.Logf("compose down: %s", strings.TrimSpace(out))
		p.removeRelays()
	})
	p.compose("up", "-d")
	p.waitHealthy()
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p *project) cmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append(append([]string{}, p.argv[1:]...), "-p", p.name)
	for _, f := range p.files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	c := exec.CommandContext(ctx, p.argv[0], full...)
	c.Dir = p.dir
	c.Env = append(os.Environ(), p.env...)
	return c
}

// compose runs the compose tool and fails the test if it fails.
func (p *project) compose(args ...string) string {
	p.t.Helper()
	out, err := p.composeErr(args...)
	if err != nil {
		p.t.Fatalf("%s %s: %v\n%s", strings.Join(p.argv, " "), strings.Join(args, " "), err, out)
	}
	return out
}

func (p *project) composeErr(args ...string) (string, error) {
	// Also used in cleanups, when the test's context is already done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.t.Context()), 3*time.Minute)
	defer cancel()
	var buf bytes.Buffer
	c := p.cmd(ctx, args...)
	c.Stdout, c.Stderr = &buf, &buf
	err := c.Run()
	return buf.String(), err
}

// container is the name compose gives replica n of service.
func (p *project) container(service string, n int) string {
	return p.name + p.sep + service + p.sep + itoa(n)
}

func (p *project) url() string { return "http://127.0.0.1:" + itoa(p.port) + "/" }

func (p *project) waitHealthy() {
	p.t.Helper()
	list := p.containers()
	for _, c := range list {
		if hc := p.e.inspect(c.ID).Config.Healthcheck; hc == nil || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
			continue
		}
		testenv.WaitHealthy(p.t, p.e.cli, c.ID, 60*time.Second)
	}
	testenv.WaitHTTP(p.t, p.url(), 30*time.Second)
}

// containers lists the project's containers as compose labels them.
func (p *project) containers() []container.Summary {
	p.t.Helper()
	list, err := p.e.cli.ContainerList(p.t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+p.name))})
	if err != nil {
		p.t.Fatal(err)
	}
	return list
}

func (p *project) ids() map[string]string {
	out := map[string]string{}
	for _, c := range p.containers() {
		out[strings.TrimPrefix(c.Names[0], "/")] = c.ID
	}
	return out
}

// baton runs baton deploy on the project with the same files and env.
func (p *project) baton(args ...string) batonRun {
	p.t.Helper()
	full := []string{"deploy", "--project-name", p.name}
	for _, f := range p.files {
		full = append(full, "-f", filepath.Join(p.dir, f))
	}
	saved := p.e.extraEnv
	p.e.extraEnv = append(append([]string{}, saved...), p.env...)
	defer func() { p.e.extraEnv = saved }()
	return p.e.run(append(full, args...)...)
}

// batonContainer runs baton deploy naming a container, with no compose
// flags, and with the compose file's variables only when withEnv is set.
func (p *project) batonContainer(withEnv bool, args ...string) batonRun {
	p.t.Helper()
	if !withEnv {
		return p.e.run(append([]string{"deploy"}, args...)...)
	}
	saved := p.e.extraEnv
	p.e.extraEnv = append(append([]string{}, saved...), p.env...)
	defer func() { p.e.extraEnv = saved }()
	return p.e.run(append([]string{"deploy"}, args...)...)
}

func (p *project) mustBaton(args ...string) batonRun {
	p.t.Helper()
	r := p.baton(args...)
	if r.code != 0 {
		p.t.Fatalf("baton deploy %s exited %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// setEnv replaces an env var given to compose and baton.
func (p *project) setEnv(key, value string) {
	var out []string
	for _, kv := range p.env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	p.env = append(out, key+"="+value)
}

func (p *project) removeRelays() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.t.Context()), time.Minute)
	defer cancel()
	list, err := p.e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "baton.role=relay"))})
	if err != nil {
		return
	}
	for _, c := range list {
		if strings.Contains(c.Names[0], p.name) {
			_ = p.e.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			_ = p.e.cli.VolumeRemove(ctx, strings.TrimPrefix(c.Names[0], "/"), true)
			_ = p.e.cli.VolumeRemove(ctx, strings.TrimPrefix(c.Names[0], "/")+"-state", true)
		}
	}
	if err := testenv.RemoveServiceNetworks(ctx, p.e.cli, p.name); err != nil {
		p.t.Logf("cleanup: %v", err)
	}
}

// assertComposeOwns checks with the real compose tool that it still owns
// the service after baton's deploy: ps and logs show the new container, and
// up -d is a no-op (nothing recreated, no orphan warning).
func (p *project) assertComposeOwns(service, wantVersion string, replicas int) {
	p.t.Helper()
	ps := p.compose("ps")
	for n := 1; n <= replicas; n++ {
		name := p.container(service, n)
		if !strings.Contains(ps, name) {
			p.t.Fatalf("compose ps does not list %s:\n%s", name, ps)
		}
		c := p.e.inspect(name)
		if !c.State.Running || c.Config.Labels["baton.deploy-id"] == "" || c.Config.Labels["baton.managed"] != "true" {
			p.t.Fatalf("%s is not baton's running replacement: %s %v", name, c.State.Status, c.Config.Labels)
		}
	}
	logs := p.compose("logs", "--no-color", "--tail", "20", service)
	if !strings.Contains(logs, "demoapp "+wantVersion+" ready") {
		p.t.Fatalf("compose logs %s do not show the new container (version %s):\n%s", service, wantVersion, logs)
	}
	before := p.ids()
	out := p.compose("up", "-d")
	after := p.ids()
	for name, id := range before {
		if after[name] != id {
			p.t.Fatalf("compose up -d recreated %s after baton's deploy:\n%s", name, out)
		}
	}
	if len(after) != len(before) {
		p.t.Fatalf("compose up -d changed the containers: %v -> %v\n%s", before, after, out)
	}
	if strings.Contains(strings.ToLower(out), "orphan") || strings.Contains(out, "Recreat") {
		p.t.Fatalf("compose up -d warned or recreated:\n%s", out)
	}
}

// assertDownRemoves checks compose down removes everything it owns,
// including baton's replacements.
func (p *project) assertDownRemoves() {
	p.t.Helper()
	p.compose("down", "-t", "1")
	if left := p.containers(); len(left) != 0 {
		var names []string
		for _, c := range left {
			names = append(names, c.Names[0])
		}
		p.t.Fatalf("compose down left %v", names)
	}
}

// TestComposeMinimal is compose-examples/01-nginx-web with each compose
// tool: the relay is set up once, then under load the web service is
// deployed twice, first with an unchanged compose file whose tag now names a
// new image (a re-pushed tag), then with a compose file naming another
// image, with zero failed requests; compose still owns the service after.
func TestComposeMinimal(t *testing.T) {
	for i, tool := range composeTools {
		t.Run(tool.name, func(t *testing.T) {
			e := newEnv(t)
			v1, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "v1", Env: map[string]string{"WARMUP": "1s"}})
			v2, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "v2", Env: map[string]string{"WARMUP": "1s"}})
			v3, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "v3", Env: map[string]string{"WARMUP": "1s"}})
			live := "baton-test/live:" + strings.ToLower(testenv.UniqueName("t"))
			tag(t, e, v1, live)
			p := upExample(t, e, i, "01-nginx-web", map[string]string{"BATON_TEST_WEB_IMAGE": live})
			assertServes(t, p.url(), "v1")
			// Set up: the relay, and nginx (a compose service) pointed at it.
			p.mustBaton("--force", "--pull", "never", "--nginx-upstream", filepath.Join(p.dir, "baton", "web.conf"), "--nginx-service", "nginx", "web")
			e.cleanupService(p.container("web", 1))

			load := startLoad(t, p.url(), 3*time.Minute)
			tag(t, e, v2, live) // what docker pull does after a new push of the tag
			r := p.mustBaton("--pull", "never", "web")
			if tool.name == "v2" && !strings.Contains(r.stderr, "compose file unchanged") {
				t.Fatalf("deploy did not follow the running container:\n%s", r.stderr)
			}
			assertServes(t, p.url(), "v2")
			p.setEnv("BATON_TEST_WEB_IMAGE", v3) // the compose file now names another image
			before := p.ids()
			r = p.mustBaton("--dry-run", "--pull", "never", "web")
			for _, want := range []string{"plan for " + p.container("web", 1), "compose file changed for web", "    image: " + live, "/web: dry-run (1 of 1 replicas would be redeployed)"} {
				if !strings.Contains(r.stdout, want) {
					t.Fatalf("dry run output lacks %q:\n%s", want, r.stdout)
				}
			}
			if after := p.ids(); !maps.Equal(before, after) {
				t.Fatalf("dry run changed the project's containers: %v -> %v", before, after)
			}
			assertServes(t, p.url(), "v2")
			r = p.mustBaton("--pull", "never", "web")
			if !strings.Contains(r.stderr, "changed for web") {
				t.Fatalf("deploy did not follow the changed file:\n%s", r.stderr)
			}
			assertServes(t, p.url(), "v3")
			p.assertComposeOwns("web", "v3", 1)

			// As cron does it: the container by name, its tag re-pushed.
			tag(t, e, v1, v3)
			r = p.batonContainer(true, "--pull", "never", p.container("web", 1))
			if r.code != 0 || strings.Contains(r.stderr, "copied the running container") {
				t.Fatalf("deploy by container name (exit %d) did not follow compose:\n%s", r.code, r.stderr)
			}
			assertServes(t, p.url(), "v1")
			p.assertComposeOwns("web", "v1", 1)
			// Without the variables the file needs (a bare cron
			// environment; this file requires them with ${VAR:?}): a
			// copy with its image label updated, and the output says
			// what compose will do.
			tag(t, e, v2, v3)
			r = p.batonContainer(false, "--pull", "never", p.container("web", 1))
			if r.code != 0 || !strings.Contains(r.stderr, "copied the running container") {
				t.Fatalf("deploy without the file's variables (exit %d):\n%s", r.code, r.stderr)
			}
			testenv.CheckLoad(t, load.Stop())
			assertServes(t, p.url(), "v2")
			if tool.name == "v2" {
				p.assertComposeOwns("web", "v2", 1)
			} else if !strings.Contains(r.stderr, "will recreate") {
				t.Fatalf("v1 fallback does not say compose will recreate:\n%s", r.stderr)
			}
			p.assertDownRemoves()
		})
	}
}

func tag(t *testing.T, e *env, from, to string) {
	t.Helper()
	if err := e.cli.ImageTag(t.Context(), from, to); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.cli.ImageRemove(context.WithoutCancel(t.Context()), to, image.RemoveOptions{}) })
}

// injectedComposeFile has configs and a secret of each source kind. With
// Compose v2 (outside Swarm) the file: ones are bind mounts; the content:
// and environment: ones are copied into the container when compose creates
// it, so they are not in its configuration.
const injectedComposeFile = `services:
  web:
    image: ${BATON_TEST_WEB_IMAGE}
    configs:
      - source: inline
        target: /etc/inline.conf
      - source: fromfile
        target: /etc/fromfile.conf
    secrets: [envsecret]
  plain:
    image: ${BATON_TEST_WEB_IMAGE}
    configs:
      - source: fromfile
        target: /etc/fromfile.conf
configs:
  inline:
    content: "inline data"
  fromfile:
    file: ./cfg.txt
secrets:
  envsecret:
    environment: BATON_TEST_SECRET
`

// TestComposeInjectedConfigsDrift: Compose v2 copies configs and secrets
// with content: or environment: sources into the container (they are no
// mount: the test checks), and baton creates the replacement from the
// container's configuration, so they would be lost. A deploy of such a
// container (by its name) is refused with exit 2 naming compose-injected
// and each one, nothing changed; a service with file: configs alone (bind
// mounts) deploys, and its replacement has the file; --accept-drift
// compose-injected deploys, and the replacement indeed lacks the copied
// files.
func TestComposeInjectedConfigsDrift(t *testing.T) {
	e := newEnv(t)
	v1, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "v1", Env: map[string]string{"WARMUP": "1s"}, HealthCheck: true})
	v2, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "v2", Env: map[string]string{"WARMUP": "1s"}, HealthCheck: true})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(injectedComposeFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cfg.txt"), []byte("file data"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &project{
		t: t, e: e, argv: composeTools[0].argv, sep: composeTools[0].sep,
		name:  "bt" + strings.ToLower(strings.TrimPrefix(testenv.UniqueName(""), "-")),
		dir:   dir,
		files: []string{"compose.yaml"},
		env:   []string{"BATON_TEST_WEB_IMAGE=" + v1, "BATON_TEST_SECRET=s3cret"},
	}
	t.Cleanup(func() {
		out, _ := p.composeErr("down", "--volumes", "--remove-orphans", "-t", "1")
		t.Logf("compose down: %s", strings.TrimSpace(out))
	})
	p.compose("up", "-d")
	web, plain := p.container("web", 1), p.container("plain", 1)
	e.cleanupService(web)
	e.cleanupService(plain)
	for _, c := range []string{web, plain} {
		testenv.WaitHealthy(t, e.cli, c, 60*time.Second)
	}
	// What compose did: the file: config is a bind mount, the others are
	// in the container's own filesystem.
	old := e.inspect(web)
	var mounted []string
	for _, m := range old.Mounts {
		mounted = append(mounted, m.Destination)
	}
	if strings.Join(mounted, ",") != "/etc/fromfile.conf" {
		t.Fatalf("compose's mounts for %s: %v, want only the file: config bound", web, mounted)
	}
	for path, want := range map[string]string{"/etc/inline.conf": "inline data", "/run/secrets/envsecret": "s3cret", "/etc/fromfile.conf": "file data"} {
		if got, err := e.containerFile(web, path); err != nil || got != want {
			t.Fatalf("%s:%s = %q, %v; want %q", web, path, got, err, want)
		}
	}

	// Refused, by the dry run and the deploy alike, naming each copied
	// config and secret, nothing changed.
	for _, dry := range []bool{true, false} {
		args := []string{"deploy", "--pull", "never", "--image", v2}
		if dry {
			args = append(args, "--dry-run")
		}
		r := e.run(append(args, web)...)
		if r.code != 2 || !strings.Contains(r.stderr, "compose-injected") || !strings.Contains(r.stderr, "config inline (content:) at /etc/inline.conf") ||
			!strings.Contains(r.stderr, "secret envsecret (environment:) at /run/secrets/envsecret") || strings.Contains(r.stderr, "fromfile") ||
			!strings.Contains(r.stderr, "--accept-drift compose-injected") {
			t.Fatalf("deploy (dry run %v) of %s: exit %d, want 2 naming the copied config and secret:\n%s", dry, web, r.code, r.stderr)
		}
	}
	if c := e.inspect(web); c.ID != old.ID || !c.State.Running {
		t.Fatalf("%s changed after a refused deploy", web)
	}

	// Positive control: file: configs alone are bind mounts, carried over.
	e.mustDeploy("--pull", "never", "--image", v2, plain)
	if got, err := e.containerFile(plain, "/etc/fromfile.conf"); err != nil || got != "file data" {
		t.Fatalf("%s's replacement: /etc/fromfile.conf = %q, %v; want the bind-mounted file", plain, got, err)
	}
	e.assertSingle(plain, v2)

	// Accepted: the replacement runs, without the copied files.
	e.mustDeploy("--pull", "never", "--image", v2, "--accept-drift", "compose-injected", web)
	e.assertSingle(web, v2)
	if got, err := e.containerFile(web, "/etc/fromfile.conf"); err != nil || got != "file data" {
		t.Fatalf("%s's replacement: /etc/fromfile.conf = %q, %v; want the bind-mounted file", web, got, err)
	}
	for _, path := range []string{"/etc/inline.conf", "/run/secrets/envsecret"} {
		if got, err := e.containerFile(web, path); err == nil {
			t.Fatalf("%s's replacement has %s (%q): then the drift refused was not real", web, path, got)
		}
	}
}
