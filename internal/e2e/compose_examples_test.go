package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/testenv"
)

// TestComposeReplicasAndWorker is compose-examples/02-replicas-worker: two
// web replicas behind nginx are replaced one at a time under load with zero
// failed requests; then --all deploys only what changed (the worker) and
// leaves the unchanged web replicas alone.
func TestComposeReplicasAndWorker(t *testing.T) {
	for i, tool := range composeTools {
		t.Run(tool.name, func(t *testing.T) {
			e := newEnv(t)
			img := func(v string) string {
				ref, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: v, Env: map[string]string{"WARMUP": "1s"}})
				return ref
			}
			web1, web2, w1, w2 := img("web1"), img("web2"), img("w1"), img("w2")
			p := upExample(t, e, i, "02-replicas-worker", map[string]string{"BATON_TEST_WEB_IMAGE": web1, "BATON_TEST_WORKER_IMAGE": w1})
			for n := 1; n <= 2; n++ {
				e.cleanupService(p.container("web", n))
			}
			e.cleanupService(p.container("worker", 1))
			p.mustBaton("--force", "--pull", "never", "--nginx-upstream", filepath.Join(p.dir, "baton", "web.conf"), "--nginx-service", "nginx", "web")
			upstream := readFile(t, filepath.Join(p.dir, "baton", "web.conf"))
			if strings.Count(upstream, "server ") != 2 {
				t.Fatalf("upstream should list both replicas' relays:\n%s", upstream)
			}

			load := startLoad(t, p.url(), 3*time.Minute)
			p.setEnv("BATON_TEST_WEB_IMAGE", web2)
			r := p.mustBaton("--pull", "never", "web")
			if !strings.Contains(r.stderr, "replica 1 of 2") || !strings.Contains(r.stderr, "replica 2 of 2") {
				t.Fatalf("replicas not deployed one at a time:\n%s", r.stderr)
			}
			testenv.CheckLoad(t, load.Stop())
			webIDs := map[string]string{}
			for n := 1; n <= 2; n++ {
				c := e.inspect(p.container("web", n))
				if c.Config.Image != web2 {
					t.Fatalf("%s runs %s", p.container("web", n), c.Config.Image)
				}
				webIDs[c.Name] = c.ID
			}
			workerID := e.inspect(p.container("worker", 1)).ID

			// A failing service stops --all: web's new image crashes, so web
			// fails (its replicas keep serving) and nothing after it runs.
			crash, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "crash", Env: map[string]string{"MODE": "crash"}})
			p.setEnv("BATON_TEST_WEB_IMAGE", crash)
			p.setEnv("BATON_TEST_WORKER_IMAGE", w2)
			r = p.baton("--pull", "never", "--all")
			if r.code != 1 || !strings.Contains(r.stdout, "/web: failed") || !strings.Contains(r.stdout, "/nginx: not-run") || !strings.Contains(r.stdout, "/worker: not-run") {
				t.Fatalf("--all with a failing service: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(lastLine(r.stderr), "crashing at start") {
				t.Fatalf("the error does not say why web failed: %s", lastLine(r.stderr))
			}
			for name, id := range webIDs {
				if c := e.inspect(name); c.ID != id || !c.State.Running {
					t.Fatalf("a failed --all changed %s", name)
				}
			}
			if e.inspect(p.container("worker", 1)).ID != workerID {
				t.Fatal("--all deployed the worker after web had failed")
			}
			assertServes(t, p.url(), "web2")

			p.setEnv("BATON_TEST_WEB_IMAGE", web2)
			r = p.mustBaton("--pull", "never", "--all")
			for _, want := range []string{"/web: up-to-date", "/worker: deployed", "/nginx: up-to-date"} {
				if !strings.Contains(r.stdout, want) {
					t.Fatalf("--all output lacks %q:\n%s", want, r.stdout)
				}
			}
			for name, id := range webIDs {
				if e.inspect(name).ID != id {
					t.Fatalf("--all replaced the unchanged %s", name)
				}
			}
			if c := e.inspect(p.container("worker", 1)); c.ID == workerID || c.Config.Image != w2 {
				t.Fatalf("worker not deployed: %s %s", c.ID, c.Config.Image)
			}
			p.assertComposeOwns("web", "web2", 2)
			p.assertDownRemoves()
		})
	}
}

// TestComposePostgres is compose-examples/03-postgres: baton refuses the
// database (a second copy on one volume would corrupt it), and --all
// deploys the app while skipping the database with the reason.
func TestComposePostgres(t *testing.T) {
	for i, tool := range composeTools {
		t.Run(tool.name, func(t *testing.T) {
			e := newEnv(t)
			web1, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "web1", Env: map[string]string{"WARMUP": "1s"}})
			web2, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "web2", Env: map[string]string{"WARMUP": "1s"}})
			dbImg, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "db"})
			// Named like the real thing: baton knows postgres by its name.
			pg16, pg17 := "baton-test/postgres:16-"+strings.ToLower(testenv.UniqueName("t")), "baton-test/postgres:17-"+strings.ToLower(testenv.UniqueName("t"))
			tag(t, e, dbImg, pg16)
			tag(t, e, dbImg, pg17)
			p := upExample(t, e, i, "03-postgres", map[string]string{"BATON_TEST_WEB_IMAGE": web1, "BATON_TEST_DB_IMAGE": pg16})
			e.cleanupService(p.container("web", 1))
			dbID := e.inspect(p.container("db", 1)).ID

			r := p.baton("--force", "--pull", "never", "db")
			if r.code != 2 || !strings.Contains(lastLine(r.stderr), "is a database (postgres)") || !strings.Contains(r.stderr, "maintenance window") {
				t.Fatalf("deploying the database: exit %d: %s", r.code, r.stderr)
			}
			if e.inspect(p.container("db", 1)).ID != dbID {
				t.Fatal("the database container was touched")
			}

			p.mustBaton("--force", "--pull", "never", "--nginx-upstream", filepath.Join(p.dir, "baton", "web.conf"), "--nginx-service", "nginx", "web")
			load := startLoad(t, p.url(), 3*time.Minute)
			p.setEnv("BATON_TEST_WEB_IMAGE", web2)
			p.setEnv("BATON_TEST_DB_IMAGE", pg17)
			r = p.mustBaton("--pull", "never", "--all")
			testenv.CheckLoad(t, load.Stop())
			if !strings.Contains(r.stdout, "/web: deployed") || !strings.Contains(r.stdout, "/db: skipped") || !strings.Contains(r.stdout, "is a database") {
				t.Fatalf("--all output:\n%s", r.stdout)
			}
			if e.inspect(p.container("db", 1)).ID != dbID {
				t.Fatal("--all replaced the database")
			}
			assertServes(t, p.url(), "web2")
			before := e.inspect(p.container("web", 1)).ID
			p.compose("up", "-d", "--no-deps", "web")
			if e.inspect(p.container("web", 1)).ID != before {
				t.Fatal("compose up -d web recreated baton's container")
			}
		})
	}
}

// TestComposeBadInput: each bad target is refused with one clear line and
// exit code 2, and nothing changes.
func TestComposeBadInput(t *testing.T) {
	e := newEnv(t)
	img, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "v1"})
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(file, `services:
  app:
    image: `+img+`
  sidecar:
    image: `+img+`
    network_mode: "service:app"
    environment: {LISTEN: "127.0.0.1:8181"}
  hostnet:
    image: `+img+`
    network_mode: host
    environment: {LISTEN: "127.0.0.1:0"}
  stopped:
    image: `+img+`
`)
	p := &project{t: t, e: e, argv: composeTools[0].argv, sep: "-", name: "btbad" + strings.ToLower(strings.TrimPrefix(testenv.UniqueName(""), "-")), dir: dir, files: []string{"docker-compose.yml"}}
	t.Cleanup(func() { _, _ = p.composeErr("down", "-t", "1") })
	p.compose("up", "-d")
	p.compose("stop", "stopped")
	before := p.ids()
	broken := filepath.Join(dir, "broken.yml")
	write(broken, "services:\n  app: [\n")

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing compose file", []string{"deploy", "-f", filepath.Join(dir, "nope.yml"), "app"}, "no such file"},
		{"invalid compose file", []string{"deploy", "-f", broken, "app"}, "compose file " + broken},
		{"unknown service", []string{"deploy", "-f", file, "nope"}, `service "nope" is not in`},
		{"service not running", []string{"deploy", "-f", file, "stopped"}, "has no running container"},
		{"project name mismatch", []string{"deploy", "-f", file, "-p", "otherproject", "app"}, "runs in project " + p.name},
		{"network_mode service", []string{"deploy", "-f", file, "sidecar"}, "network_mode: service:app"},
		{"network_mode host", []string{"deploy", "-f", file, "hostnet"}, "network_mode: host"},
		{"--image with a service", []string{"deploy", "-f", file, "--image", img, "app"}, "--image cannot be used with a compose service"},
		{"--all with a service", []string{"deploy", "-f", file, "--all", "app"}, "--all deploys every service"},
		{"--all with per-service flags", []string{"deploy", "-f", file, "--all", "--http-probe", "/x"}, "applies to one service"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(tc.args...)
			last := lastLine(r.stderr)
			if r.code != 2 || !strings.HasPrefix(last, "baton: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("exit %d, last line %q; want exit 2 and %q", r.code, last, tc.want)
			}
			after := p.ids()
			for name, id := range before {
				if after[name] != id {
					t.Fatalf("%s changed", name)
				}
			}
			if len(after) != len(before) {
				t.Fatalf("containers changed: %v", after)
			}
		})
	}
}

// TestComposeContainerNameAndPorts: a service with container_name: and a
// published port (what docker-rollout cannot do). The compose file changes
// its image and environment; baton follows them, keeps the name, hands the
// published port over, and compose still owns the container.
func TestComposeContainerNameAndPorts(t *testing.T) {
	for i, tool := range composeTools {
		t.Run(tool.name, func(t *testing.T) {
			e := newEnv(t)
			v1, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "v1", HealthCheck: true})
			v2, _ := testenv.DemoImage(t, e.cli, testenv.DemoImageOpts{Version: "v2", HealthCheck: true})
			dir := t.TempDir()
			name := strings.ToLower(testenv.UniqueName("btfixed-"))
			port := testenv.FreePort(t)
			file := "services:\n  api:\n    image: ${API_IMAGE:?}\n    container_name: " + name + "\n    ports: [\"127.0.0.1:" + itoa(port) + ":8080\"]\n    environment:\n      FLAVOUR: ${FLAVOUR:?}\n"
			if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(file), 0o644); err != nil {
				t.Fatal(err)
			}
			p := &project{t: t, e: e, argv: composeTools[i].argv, sep: composeTools[i].sep, name: "btcn" + strings.ToLower(strings.TrimPrefix(testenv.UniqueName(""), "-")),
				dir: dir, files: []string{"docker-compose.yml"}, env: []string{"API_IMAGE=" + v1, "FLAVOUR=plain"}}
			t.Cleanup(func() { _, _ = p.composeErr("down", "-t", "1") })
			p.compose("up", "-d")
			testenv.WaitHealthy(t, e.cli, name, time.Minute)
			e.cleanupService(name)
			published := "http://127.0.0.1:" + itoa(port) + "/"
			assertServes(t, published, "v1")

			p.setEnv("API_IMAGE", v2)
			p.setEnv("FLAVOUR", "spicy")
			r := p.mustBaton("--pull", "never", "api")
			if !strings.Contains(r.stderr, "container_name") {
				t.Fatalf("deploy output does not say how it followed the file:\n%s", r.stderr)
			}
			c := e.inspect(name)
			if c.Config.Image != v2 || !contains(c.Config.Env, "FLAVOUR=spicy") {
				t.Fatalf("%s runs %s with env %v", name, c.Config.Image, c.Config.Env)
			}
			assertServes(t, published, "v2")
			before := c.ID
			out := p.compose("up", "-d")
			if e.inspect(name).ID != before || strings.Contains(out, "Recreat") {
				t.Fatalf("compose up -d recreated the container:\n%s", out)
			}
			if ps := p.compose("ps"); !strings.Contains(ps, name) {
				t.Fatalf("compose ps does not list %s:\n%s", name, ps)
			}
			p.assertDownRemoves()
		})
	}
}
