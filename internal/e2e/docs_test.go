package e2e

// The README is a test: every command of the code blocks of README.md,
// docs/*.md and compose-examples/*/README.md is run here AS WRITTEN, by a
// shell, with the baton binary `make build` makes, in a prepared real
// environment (registry, nginx on the host and in a container, compose v2),
// and its documented outcome is checked. A documented command this file
// neither runs nor lists (docsNotRun, docsNotCommands) fails
// TestDocsCommandsAccountedFor, so new docs are covered or consciously
// excused.
//
// What is substituted (docMappings explains each): image and registry names
// (the test registry holds test images under the documented repositories and
// tags); container and compose project names (unique per run, because the
// Docker daemon is shared with concurrently running tests); host ports
// (free ones); host paths outside the test's own directory (the nginx
// upstream file, /var/lib/baton, /root/.docker/config.json); and
// `nginx -s reload` (the test's nginx has its own prefix). Nothing else of a
// command changes: its words, order and flags are the documented ones.
//
// To cover a new documented command: add a docStep to the scenario whose
// environment fits (or a new scenario) with the exact text as extracted (see
// TestDocsCommandsAccountedFor's message), the exit code and a check of its
// documented effect; or list it in docsNotRun with the reason.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// docsNotRun are documented commands the suite cannot run, with why.
var docsNotRun = map[string]string{
	"baton deploy --swarm web --update-parallelism 2 --update-monitor 10s": "needs a Swarm manager, which the docs test's shared daemon must never become; internal/swarmtest runs baton deploy with --update-monitor on a swarm of its own, and TestHelpDefaults covers these flags",
	"baton rollback web": "the Swarm section's; needs a Swarm manager (never the shared daemon); internal/swarmtest's TestSwarmServiceDeploys runs baton rollback SERVICE and checks the previous image serves",
	"baton status web":   "the Swarm section's; needs a Swarm manager (never the shared daemon); internal/swarmtest's TestSwarmServiceDeploys runs baton status SERVICE and checks its tasks and image",
	"baton deploy web --image registry.example.com/shop/web:1.4.2 --http-probe /healthz --probe-cmd \"/app -probe\"": "the Swarm section's; needs a Swarm manager (never the shared daemon); internal/swarmtest's TestSwarmProbeHealthcheck runs baton deploy SERVICE --http-probe /healthz --probe-cmd \"/demoapp -probe\" and checks the tasks' HEALTHCHECK gates the update",
	"baton deploy -f stack.yml web --image registry.example.com/shop/web:1.4.2":                                      "the Swarm section's; needs a Swarm manager (never the shared daemon) and a stack; internal/swarmtest's TestSwarmStackDeploy runs baton deploy -f stack.yml web on a stack made by docker stack deploy",
	"make test":                          "it is the suite this test is part of",
	"make test-short":                    "make test runs every unit test already (go test ./...), this one among them",
	"make demo":                          "installs packages (scripts/setup), then runs cmd/baton-demo for minutes under load; cmd/baton-demo shares its deploy code with cmd/baton-bench and the e2e tests",
	"make bench":                         "minutes of load per mode (the benchmark, not a check); its runs are in the README's tables",
	"go run ./cmd/baton-bench -datapath": "minutes of saturating load per data path (the benchmark, not a check); internal/bench's TestRunDataPath runs it small, and its run is the README's Data path table",
	"go install github.com/baton-sh/baton/cmd/baton@latest": "fetches the module over the network, which the suite has none of; the binary it makes (cgo on where gcc is, so dynamically linked) is built from this checkout by TestDynamicBatonMovesTraffic, which deploys through the relay with it",
	"baton deploy [flags] CONTAINER":                        "a synopsis with placeholders; its concrete forms are the README's other baton deploy lines, all run here",
}

// docsNotCommands are lines of code blocks that are not commands.
var docsNotCommands = map[string]string{
	"requests sent: 3672":                      "output of make demo",
	"failed: 0":                                "output of make demo",
	"answered by: v1=1264 v2=1208 v3=1200":     "output of make demo",
	"deploys: v2 2s, v3 2s, v1 2s":             "output of make demo",
	"latency: p50 4.1ms p99 11ms max 14ms":     "output of make demo",
	"zero failed requests across the deploys.": "output of make demo",
	"notifications:":                           "registry configuration (YAML)",
	"endpoints:":                               "registry configuration (YAML)",
	"- name: baton-web":                        "registry configuration (YAML)",
	"url: http://127.0.0.1:9090/v1/deploy/web": "registry configuration (YAML)",
	"headers:":                                 "registry configuration (YAML)",
	"Authorization: [Bearer THE-TOKEN]":        "registry configuration (YAML)",
	"app1 relay-address=10.0.0.11":             "hosts file (README, More than one host); its format is parsed by internal/rollout's tests and the docs scenario writes one",
	"app2 relay-address=10.0.0.12":             "hosts file (README, More than one host)",
	"local relay-address=10.0.0.10 docker-host=unix:///var/run/docker.sock": "hosts file (README, More than one host)",
	"nginx-reload = nginx -s reload":                                        "configuration file (/etc/baton/baton.conf); internal/config tests parse it",
	"upstream-dir = /etc/nginx/conf.d/baton":                                "configuration file (/etc/baton/baton.conf); internal/config tests parse it",
	"drain = 20s":                                                           "configuration file (/etc/baton/baton.conf); internal/config tests parse it",
}

// docTable is every documented command this file knows, with what it does
// with it.
func docTable(cmds []docCommand) (map[string]string, []error) {
	m := map[string]string{}
	var errs []error
	for k, v := range docsNotRun {
		m[k] = "not run: " + v
	}
	for k, v := range docsNotCommands {
		m[k] = "not a command: " + v
	}
	for _, sc := range docScenarios() {
		for _, st := range sc.allSteps() {
			lines, err := st.documented(cmds)
			if err != nil {
				errs = append(errs, err)
			}
			for _, l := range lines {
				m[l] = "run in scenario " + sc.name
			}
		}
	}
	return m, errs
}

// docStep is one documented command and its documented outcome.
type docStep struct {
	doc string // exactly as extracted from the docs
	// run, if set, is what runs instead of doc: the concrete forms of a
	// synopsis, the command of a crontab line. Mappings apply to it too.
	run []string
	// with are further documented lines run in the same shell after doc
	// (shell variables carry over), each also accounted for.
	with []string
	// block, instead of doc and with: the consecutive documented lines of
	// a file from the one starting with from through the one starting with
	// through, run in one shell (a script shown line by line, whose lines
	// may change as the feature does).
	block  *docBlock
	before func(s *docRun)
	want   int // exit code
	// retry runs the command again until it exits want, for up to this
	// long: a user waits for what was just started to come up.
	retry time.Duration
	// long: a command that runs until stopped (watch, serve). It is started,
	// ready must report it answers, then during runs, then SIGTERM must end
	// it with exit code 0.
	long   bool
	ready  func(s *docRun, stderr string) bool
	during []docStep
	check  func(s *docRun, out stepOut) error
}

type docBlock struct{ file, from, through string }

// documented returns the documented lines the step runs and accounts for.
func (st docStep) documented(cmds []docCommand) ([]string, error) {
	if st.block == nil {
		return append([]string{st.doc}, st.with...), nil
	}
	b := st.block
	var lines []string
	for _, c := range cmds {
		if c.File != b.file {
			continue
		}
		if lines == nil && !strings.HasPrefix(c.Text, b.from) {
			continue
		}
		lines = append(lines, c.Text)
		if strings.HasPrefix(c.Text, b.through) {
			return lines, nil
		}
	}
	return nil, fmt.Errorf("%s: no block of commands from `%s...` through `%s...`: update the docs test's block", b.file, b.from, b.through)
}

type stepOut struct {
	ran            string
	code           int
	stdout, stderr string
}

type docScenario struct {
	name  string
	setup func(s *docRun)
	steps []docStep
}

func (sc docScenario) allSteps() []docStep {
	var out []docStep
	var add func(steps []docStep)
	add = func(steps []docStep) {
		for _, st := range steps {
			out = append(out, st)
			add(st.during)
		}
	}
	add(sc.steps)
	return out
}

// docMapping replaces a documented name by the test's.
type docMapping struct {
	re   *regexp.Regexp
	with string
}

// docRun is one scenario's environment.
type docRun struct {
	t    *testing.T
	e    *env
	cmds []docCommand
	root string // module root: where make build and docker build run
	bin  string // directory of the baton binary make build made
	dir  string // working directory of the next command
	env  []string
	maps []docMapping
	vals map[string]string // facts of the scenario for the checks
}

func (s *docRun) mapTo(pattern, with string) {
	s.maps = append(s.maps, docMapping{regexp.MustCompile(pattern), with})
}

func (s *docRun) apply(text string) string {
	for _, m := range s.maps {
		text = m.re.ReplaceAllString(text, m.with)
	}
	return text
}

// mapContainer maps a documented container (or webhook target) name to a
// unique one, as a whole word: not inside a path or an image reference.
func (s *docRun) mapContainer(doc, test string) {
	s.mapTo(`(^|[\s/])`+regexp.QuoteMeta(doc)+`($|\s)`, "${1}"+test+"${2}")
	s.vals["name:"+doc] = test
}

// commonMappings are the registry names every scenario maps to the test
// registry, and the docker run labels that keep the test's containers its
// own.
func (s *docRun) commonMappings() {
	reg := s.e.reg.Addr()
	s.mapTo(`registry\.example\.com/`, reg+"/")
	s.mapTo(`registry\.example/`, reg+"/")
	// Docker Hub names (shop/web:1.4.2) live in the test registry too.
	s.mapTo(`(\s)shop/web:`, "${1}"+reg+"/shop/web:")
	scope := strings.ToLower(testenv.UniqueName("docs"))
	s.vals["scope"] = scope
	// Watchers and containers of this test are in their own scope, so a
	// watcher started here never deploys another test's containers on the
	// shared daemon; the label baton.test=1 marks the test's containers.
	s.mapTo(`^docker run -d `, "docker run -d --label baton.test=1 --label baton.scope="+scope+" -e BATON_SCOPE="+scope+" ")
	s.env = append(s.env, "BATON_SCOPE="+scope)
}

// push builds the demo app answering version v (listening on :80 when
// port80), pushes it as repoTag to the test registry and removes the local
// tag, so that a documented command really pulls it.
func (s *docRun) push(repoTag, v string, port80 bool) string {
	s.t.Helper()
	appEnv := map[string]string{"WARMUP": "500ms"}
	if port80 {
		appEnv["LISTEN"] = ":80"
	}
	local, _ := testenv.DemoImage(s.t, s.e.cli, testenv.DemoImageOpts{Version: v, Env: appEnv})
	ref := s.e.reg.Push(s.t, s.e.cli, local, repoTag)
	if _, err := s.e.cli.ImageRemove(s.t.Context(), ref, image.RemoveOptions{}); err != nil {
		s.t.Fatalf("untagging %s: %v", ref, err)
	}
	return ref
}

// removeRegistryImages removes what commands pulled from the test registry.
func (s *docRun) removeRegistryImages() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), time.Minute)
	defer cancel()
	list, err := s.e.cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return
	}
	for _, img := range list {
		for _, ref := range append(append([]string{}, img.RepoTags...), img.RepoDigests...) {
			if strings.HasPrefix(ref, s.e.reg.Addr()+"/") {
				_, _ = s.e.cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true})
				break
			}
		}
	}
}

func (s *docRun) environ() []string {
	// The documented upstream paths are mapped into temporary directories,
	// which the test allows as an operator would with --upstream-dir.
	env := append(os.Environ(), "PATH="+s.bin+string(os.PathListSeparator)+os.Getenv("PATH"), "BATON_STATE_DIR="+s.e.stateDir, "BATON_UPSTREAM_DIRS="+os.TempDir())
	return append(env, s.env...)
}

// shell runs script with bash in the scenario's directory.
func (s *docRun) shell(ctx context.Context, script string) stepOut {
	cmd := exec.CommandContext(ctx, "bash", "-ec", script)
	cmd.Dir, cmd.Env = s.dir, s.environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stepOut{ran: script, stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		out.code = ee.ExitCode()
	} else if err != nil {
		out.code = -1
		out.stderr += "\n(could not run: " + err.Error() + ")"
	}
	return out
}

// fail reports a documented command that did not do what the docs say.
func (s *docRun) fail(st docStep, out stepOut, format string, args ...any) {
	s.t.Helper()
	lines, _ := st.documented(s.cmds)
	if len(lines) == 0 {
		lines = []string{st.doc}
	}
	s.t.Fatalf("documented command failed: `%s`\n  documented at: %s\n  ran as: %s\n  problem: %s\n  stdout: %s\n  stderr: %s",
		strings.Join(lines, "\n    "), whereDocumented(s.cmds, lines[0]), out.ran, fmt.Sprintf(format, args...), clip(out.stdout), clip(out.stderr))
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 3000 {
		s = s[:1500] + "\n...\n" + s[len(s)-1500:]
	}
	return s
}

func (s *docRun) runStep(st docStep) {
	s.t.Helper()
	if st.before != nil {
		st.before(s)
	}
	lines, err := st.documented(s.cmds)
	if err != nil {
		s.t.Fatal(err)
	}
	texts := st.run
	if texts == nil {
		// The documented lines, in one shell: variables carry over.
		texts = []string{strings.Join(lines, "\n")}
	}
	for _, text := range texts {
		var mapped []string
		for _, l := range strings.Split(text, "\n") {
			mapped = append(mapped, s.apply(l))
		}
		script := strings.Join(mapped, "\n")
		if st.long {
			s.runLong(st, script)
			continue
		}
		deadline := time.Now().Add(st.retry)
		var out stepOut
		var checkErr error
		for {
			ctx, cancel := context.WithTimeout(s.t.Context(), 5*time.Minute)
			out = s.shell(ctx, script)
			cancel()
			checkErr = nil
			if out.code == st.want && st.check != nil {
				checkErr = st.check(s, out)
			}
			if (out.code == st.want && checkErr == nil) || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		s.t.Logf("$ %s\n-> exit %d\nstdout: %s\nstderr: %s", script, out.code, clip(out.stdout), clip(out.stderr))
		if out.code != st.want {
			s.fail(st, out, "exit code %d, the docs say %d", out.code, st.want)
		}
		if checkErr != nil {
			s.fail(st, out, "%v", checkErr)
		}
		if strings.HasPrefix(text, "cd ") {
			s.dir = filepath.Join(s.dir, strings.TrimSpace(strings.TrimPrefix(text, "cd ")))
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.b.String()
}

// runLong starts a command that runs until stopped, waits until it answers,
// runs the steps documented for while it runs, then stops it with SIGTERM,
// as a service manager does, and expects exit code 0.
func (s *docRun) runLong(st docStep, script string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), 5*time.Minute)
	defer cancel()
	// exec: the signal reaches baton itself, not a shell around it.
	cmd := exec.CommandContext(ctx, "bash", "-ec", "exec "+script)
	cmd.Dir, cmd.Env = s.dir, s.environ()
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	out := func() stepOut {
		return stepOut{ran: script, stdout: stdout.String(), stderr: stderr.String()}
	}
	if err := cmd.Start(); err != nil {
		s.fail(st, out(), "could not start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !st.ready(s, stderr.String()) {
		select {
		case err := <-done:
			stopped = true
			s.fail(st, out(), "exited before it answered: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.fail(st, out(), "did not answer within 60s")
		}
	}
	s.t.Logf("$ %s (running, answers)", script)
	for _, d := range st.during {
		s.runStep(d)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.fail(st, out(), "SIGTERM: %v", err)
	}
	var err error
	select {
	case err = <-done:
		stopped = true
	case <-time.After(90 * time.Second):
		s.fail(st, out(), "still running 90s after SIGTERM")
	}
	o := out()
	if ee, ok := err.(*exec.ExitError); ok {
		o.code = ee.ExitCode()
	} else if err != nil {
		o.code = -1
	}
	s.t.Logf("$ %s\n-> SIGTERM, exit %d\nstderr: %s", script, o.code, clip(o.stderr))
	if o.code != 0 {
		s.fail(st, o, "exit code %d after SIGTERM, the docs say 0", o.code)
	}
	if st.check != nil {
		if err := st.check(s, o); err != nil {
			s.fail(st, o, "%v", err)
		}
	}
}

// TestDocsCommandsRun runs the documented commands, scenario by scenario.
func TestDocsCommandsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the documented commands against Docker, nginx and compose")
	}
	root, cmds := documentedCommands(t)
	bin := t.TempDir()
	for _, sc := range docScenarios() {
		ok := t.Run(sc.name, func(t *testing.T) {
			e := newEnv(t)
			s := &docRun{t: t, e: e, cmds: cmds, root: root, bin: bin, dir: t.TempDir(), vals: map[string]string{}}
			t.Cleanup(s.removeRegistryImages)
			s.commonMappings()
			if sc.setup != nil {
				sc.setup(s)
			}
			for _, st := range sc.steps {
				s.runStep(st)
			}
		})
		if !ok && sc.name == "install" {
			t.Fatal("make build failed: the other scenarios need its binary")
		}
	}
}

// --- checks ---

func (s *docRun) inspect(name string) (container.InspectResponse, error) {
	c, err := s.e.cli.ContainerInspect(s.t.Context(), name)
	if err != nil {
		return c, fmt.Errorf("container %s: %w", name, err)
	}
	return c, nil
}

// runs checks that container name runs image ref.
func (s *docRun) runs(name, ref string) error {
	c, err := s.inspect(name)
	if err != nil {
		return err
	}
	if !c.State.Running || c.Config.Image != ref {
		return fmt.Errorf("container %s is %s with image %s, want running %s", name, c.State.Status, c.Config.Image, ref)
	}
	return nil
}

// serves checks url answers version v (the demo app's first word).
func serves(url, v string) error {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 3 {
		resp, err := c.Get(url)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), v+" ") {
			return fmt.Errorf("GET %s: %d %q, want version %s", url, resp.StatusCode, body, v)
		}
	}
	return nil
}

func all(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *docRun) label(name, key string) (string, error) {
	c, err := s.inspect(name)
	if err != nil {
		return "", err
	}
	return c.Config.Labels[key], nil
}

func (s *docRun) labelIs(name, key, want string) error {
	got, err := s.label(name, key)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("container %s: label %s=%q, want %q", name, key, got, want)
	}
	return nil
}

func (s *docRun) sameContainer(name, key string) error {
	c, err := s.inspect(name)
	if err != nil {
		return err
	}
	if c.ID != s.vals[key] {
		return fmt.Errorf("container %s was replaced (%.12s, was %.12s); the docs say nothing changes", name, c.ID, s.vals[key])
	}
	return nil
}

func (s *docRun) remember(name, key string) {
	s.t.Helper()
	c, err := s.inspect(name)
	if err != nil {
		s.t.Fatal(err)
	}
	s.vals[key] = c.ID
}

// historyJSON decodes baton history --json output.
func historyJSON(stdout string) ([]map[string]any, error) {
	var entries []map[string]any
	if err := json.Unmarshal([]byte(stdout), &entries); err != nil {
		return nil, fmt.Errorf("history --json: %w", err)
	}
	return entries, nil
}

func docWait(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// --- the scenarios ---

func docScenarios() []docScenario {
	return []docScenario{
		installScenario(),
		readmeHostNginxScenario(),
		readmeContainerNginxScenario(),
		readmeMultiHostScenario(),
		unattendedScenario(),
		batonContainerScenario(),
		composeScenario("01-nginx-web"),
		composeScenario("02-replicas-worker"),
		composeScenario("03-postgres"),
	}
}

// installScenario: make build, the way the README installs baton. Every
// later baton command runs this binary (first on PATH).
func installScenario() docScenario {
	return docScenario{name: "install", setup: func(s *docRun) { s.dir = s.root }, steps: []docStep{{
		doc: "make build",
		check: func(s *docRun, _ stepOut) error {
			built := filepath.Join(s.root, "bin", "baton")
			f, err := elf.Open(built)
			if err != nil {
				return fmt.Errorf("make build: %w", err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					return fmt.Errorf("%s is dynamically linked; the README says static", built)
				}
			}
			data, err := os.ReadFile(built)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(s.bin, "baton"), data, 0o755)
		},
	}}}
}

// readmeMultiHostScenario: the README's "More than one host" commands, with
// a hosts file naming the test's engine (the three-engine proof is
// TestRolloutAcrossHosts; here the documented lines themselves run).
func readmeMultiHostScenario() docScenario {
	var ref = func(s *docRun, tag string) string { return s.e.reg.Addr() + "/shop/web:" + tag }
	return docScenario{
		name: "README more than one host",
		setup: func(s *docRun) {
			name := strings.ToLower(testenv.UniqueName("docs-mh-"))
			s.mapContainer("web", name)
			old := s.push("shop/web:1.4.1", "1.4.1", false)
			s.push("shop/web:1.4.2", "1.4.2", false)
			s.push("shop/web:1.4.3", "1.4.3", false)
			s.e.pull(old, "")
			testenv.RunDemo(s.t, s.e.cli, testenv.RunOpts{Name: name, Image: old})
			s.e.cleanupService(name)
			engine := os.Getenv("DOCKER_HOST")
			if engine == "" {
				engine = "unix:///var/run/docker.sock"
			}
			hosts := "# the test's engine, as one host of the rollout\ndocs relay-address=127.0.0.1 docker-host=" + engine + "\n"
			if err := os.WriteFile(filepath.Join(s.dir, "hosts"), []byte(hosts), 0o600); err != nil {
				s.t.Fatal(err)
			}
			up := filepath.Join(s.t.TempDir(), "etc", "nginx", "baton", "web.conf")
			if err := os.MkdirAll(filepath.Dir(up), 0o755); err != nil {
				s.t.Fatal(err)
			}
			ngx := testenv.HostNginx(s.t, testenv.NginxOpts{UpstreamFile: up})
			port := testenv.FreePort(s.t)
			s.mapTo(`/etc/nginx/baton/web\.conf`, up)
			s.mapTo(`"nginx -s reload"`, `"`+ngx.ReloadCommand()+`"`)
			s.mapTo(`--relay-port 8081`, fmt.Sprintf("--relay-port %d", port))
			s.vals["web"], s.vals["url"], s.vals["upstream"], s.vals["server"] = name, ngx.URL(), up, fmt.Sprintf("server 127.0.0.1:%d ", port)
		},
		steps: []docStep{
			{doc: `baton deploy web --image shop/web:1.4.2 --hosts hosts --relay-port 8081 --http-probe /healthz --nginx-upstream /etc/nginx/baton/web.conf --nginx-reload "nginx -s reload"`, check: func(s *docRun, out stepOut) error {
				up, err := os.ReadFile(s.vals["upstream"])
				if err != nil {
					return err
				}
				if !strings.Contains(string(up), s.vals["server"]) {
					return fmt.Errorf("upstream file does not list the host's relay (%s):\n%s", s.vals["server"], up)
				}
				if !strings.Contains(out.stdout, "host docs: deployed") {
					return fmt.Errorf("no per-host result line in stdout: %q", out.stdout)
				}
				return all(s.runs(s.vals["web"], ref(s, "1.4.2")), serves(s.vals["url"], "1.4.2"))
			}},
			{doc: "baton deploy web --image shop/web:1.4.3 --hosts hosts --rollback-on-failure", check: func(s *docRun, _ stepOut) error {
				return all(s.runs(s.vals["web"], ref(s, "1.4.3")), serves(s.vals["url"], "1.4.3"))
			}},
			{doc: "baton status web --hosts hosts", check: func(s *docRun, out stepOut) error {
				if !strings.Contains(out.stdout, "docs") || !strings.Contains(out.stdout, ref(s, "1.4.3")) {
					return fmt.Errorf("status does not show host docs on 1.4.3: %q", out.stdout)
				}
				return nil
			}},
			{doc: "baton rollback web --hosts hosts", check: func(s *docRun, _ stepOut) error {
				return all(s.runs(s.vals["web"], ref(s, "1.4.2")), serves(s.vals["url"], "1.4.2"))
			}},
			{doc: "baton history web --hosts hosts", check: func(s *docRun, out stepOut) error {
				lines := strings.Split(strings.TrimSpace(out.stdout), "\n")
				if len(lines) != 4 || !strings.Contains(lines[0], "HOST") {
					return fmt.Errorf("history across hosts: want a header and the 3 deploys of this scenario: %q", out.stdout)
				}
				for _, l := range lines[1:] {
					if !strings.Contains(l, " docs ") || !strings.Contains(l, s.vals["web"]) {
						return fmt.Errorf("history line %q is not labelled with host docs", l)
					}
				}
				if !strings.Contains(lines[2], ref(s, "1.4.3")) {
					return fmt.Errorf("history across hosts: the second deploy is not 1.4.3's: %q", out.stdout)
				}
				return nil
			}},
		},
	}
}

// readmeHostNginxScenario: the README's deploys of a plain container `web`,
// first alone, then behind nginx on the host.
func readmeHostNginxScenario() docScenario {
	var ref = func(s *docRun, tag string) string { return s.e.reg.Addr() + "/shop/web:" + tag }
	return docScenario{
		name: "README host nginx",
		setup: func(s *docRun) {
			name := strings.ToLower(testenv.UniqueName("docs-web-"))
			s.mapContainer("web", name)
			removeRoute(s.t, kernelpath.NewTable(kernelpath.ExecRunner{}), name)
			old := s.push("shop/web:1.4.1", "1.4.1", false)
			s.push("shop/web:1.4.2", "1.4.2", false)
			s.push("shop/web:1.4.3", "1.4.3", false)
			s.e.pull(old, "")
			// A fixed host port, as a user publishes one for nginx (an
			// ephemeral one would change with the container).
			addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(s.t))
			testenv.RunDemo(s.t, s.e.cli, testenv.RunOpts{Name: name, Image: old, Publish: []string{addr + ":8080"}})
			s.e.cleanupService(name)
			testenv.WaitHTTP(s.t, "http://"+addr+"/", 30*time.Second)
			// nginx on the host as the README configures it; its upstream
			// file starts with the container's published port, as the
			// README says to write it.
			up := filepath.Join(s.t.TempDir(), "etc", "nginx", "baton", "web.conf")
			if err := os.MkdirAll(filepath.Dir(up), 0o755); err != nil {
				s.t.Fatal(err)
			}
			ngx := testenv.HostNginx(s.t, testenv.NginxOpts{UpstreamFile: up, InitialServers: []string{addr}})
			s.mapTo(`/etc/nginx/baton/web\.conf`, up)
			s.mapTo(`"nginx -s reload"`, `"`+ngx.ReloadCommand()+`"`)
			s.vals["web"], s.vals["url"], s.vals["upstream"] = name, ngx.URL(), up
		},
		steps: []docStep{
			{doc: "baton deploy web --image registry.example.com/shop/web:1.4.2", check: func(s *docRun, _ stepOut) error {
				// No probe was asked for: the app may still be warming up
				// when the port accepts connections (the README's "none" mode).
				return all(s.runs(s.vals["web"], ref(s, "1.4.2")),
					docWait(30*time.Second, func() error { return serves(s.vals["url"], "1.4.2") }))
			}},
			{doc: `baton deploy web --image shop/web:1.4.2 --http-probe /healthz --nginx-upstream /etc/nginx/baton/web.conf --nginx-reload "nginx -s reload"`, check: func(s *docRun, _ stepOut) error {
				up, err := os.ReadFile(s.vals["upstream"])
				if err != nil {
					return err
				}
				relay, err := s.inspect(traffic.RelayName(s.vals["web"]))
				if err != nil || !relay.State.Running {
					return fmt.Errorf("no relay running after a deploy with --nginx-upstream (upstream file: %s): %v", up, err)
				}
				return all(s.runs(s.vals["web"], ref(s, "1.4.2")), serves(s.vals["url"], "1.4.2"),
					s.labelIs(s.vals["web"], "baton.nginx-upstream", s.vals["upstream"]), s.labelIs(s.vals["web"], "baton.http-probe", "/healthz"))
			}},
			{doc: "baton deploy web --image shop/web:1.4.3", check: func(s *docRun, _ stepOut) error {
				// The nginx settings were recorded: traffic moves without them.
				return all(s.runs(s.vals["web"], ref(s, "1.4.3")), serves(s.vals["url"], "1.4.3"))
			}},
			{doc: "baton history [web] [--json]", run: []string{"baton history", "baton history web", "baton history --json web", "baton history web --json"},
				check: func(s *docRun, out stepOut) error {
					if !strings.Contains(out.ran, "--json") {
						if !strings.Contains(out.stdout, s.vals["web"]) {
							return fmt.Errorf("history does not list %s", s.vals["web"])
						}
						return nil
					}
					entries, err := historyJSON(out.stdout)
					if err != nil {
						return err
					}
					if len(entries) != 3 {
						return fmt.Errorf("history lists %d deploys of %s, want the 3 above", len(entries), s.vals["web"])
					}
					for _, e := range entries {
						if e["outcome"] != "deployed" || e["target"] != s.vals["web"] {
							return fmt.Errorf("history entry %v, want target %s deployed", e, s.vals["web"])
						}
					}
					return nil
				}},
			{doc: "baton deploy web --image shop/web:1.4.2 --bake 10s", check: func(s *docRun, out stepOut) error {
				if !strings.Contains(out.stderr, "passed its bake") {
					return fmt.Errorf("the deploy did not bake: %s", out.stderr)
				}
				return all(s.runs(s.vals["web"], ref(s, "1.4.2")), serves(s.vals["url"], "1.4.2"), s.labelIs(s.vals["web"], "baton.bake", "10s"))
			}},
			{doc: "baton deploy web --image shop/web:1.4.3 --canary 10", check: func(s *docRun, out stepOut) error {
				if !strings.Contains(out.stdout, "canary of "+s.vals["web"]) {
					return fmt.Errorf("the deploy did not say the canary is on: %s", out.stdout)
				}
				// The old container keeps the name and serves 90%.
				return s.runs(s.vals["web"], ref(s, "1.4.2"))
			}},
			{doc: "baton abort web", check: func(s *docRun, _ stepOut) error {
				return all(s.runs(s.vals["web"], ref(s, "1.4.2")), serves(s.vals["url"], "1.4.2"))
			}},
			{doc: "baton deploy web --image shop/web:1.4.3 --canary 20", check: func(s *docRun, out stepOut) error {
				if !strings.Contains(out.stdout, "canary of "+s.vals["web"]) {
					return fmt.Errorf("the deploy did not say the canary is on: %s", out.stdout)
				}
				return s.runs(s.vals["web"], ref(s, "1.4.2"))
			}},
			{doc: "baton promote web", check: func(s *docRun, _ stepOut) error {
				return all(s.runs(s.vals["web"], ref(s, "1.4.3")), serves(s.vals["url"], "1.4.3"))
			}},
			{doc: "baton deploy web --kernel-path", check: func(s *docRun, _ stepOut) error {
				c, err := s.inspect(s.vals["web"])
				if err != nil {
					return err
				}
				ep := c.NetworkSettings.Networks[dockerctl.KernelNetwork(s.vals["web"])]
				if ep == nil {
					return fmt.Errorf("%s is not on its kernel network %s", s.vals["web"], dockerctl.KernelNetwork(s.vals["web"]))
				}
				want := ep.IPAddress + ":8080"
				got, err := kernelpath.NewTable(kernelpath.ExecRunner{}).Target(s.t.Context(), s.vals["web"])
				if err != nil || got != want {
					return fmt.Errorf("kernel path of %s -> %q (%v), want %s", s.vals["web"], got, err, want)
				}
				return all(s.runs(s.vals["web"], ref(s, "1.4.3")), serves(s.vals["url"], "1.4.3"))
			}},
			{doc: "baton deploy web --kernel-path=false", check: func(s *docRun, _ stepOut) error {
				if has, err := kernelpath.NewTable(kernelpath.ExecRunner{}).Has(s.t.Context(), s.vals["web"]); err != nil || has {
					return fmt.Errorf("kernel path of %s still there after --kernel-path=false (%v)", s.vals["web"], err)
				}
				return all(s.runs(s.vals["web"], ref(s, "1.4.3")), serves(s.vals["url"], "1.4.3"))
			}},
		},
	}
}

// readmeContainerNginxScenario: the README's deploy with nginx in a
// container, which baton sends HUP.
func readmeContainerNginxScenario() docScenario {
	return docScenario{
		name: "README container nginx",
		setup: func(s *docRun) {
			name := strings.ToLower(testenv.UniqueName("docs-web-"))
			s.mapContainer("web", name)
			old := s.push("shop/web:1.4.1", "1.4.1", false)
			s.push("shop/web:1.4.2", "1.4.2", false)
			s.e.pull(old, "")
			id := testenv.RunDemo(s.t, s.e.cli, testenv.RunOpts{Name: name, Image: old})
			s.e.cleanupService(name)
			ip := testenv.ContainerIP(s.t, s.e.cli, id, "bridge")
			testenv.WaitHTTP(s.t, "http://"+ip+":8080/", 30*time.Second)
			ngx := testenv.ContainerNginx(s.t, s.e.cli, testenv.NginxOpts{UpstreamFile: "web.conf", InitialServers: []string{ip + ":8080"}})
			s.mapTo(`/etc/nginx/baton/web\.conf`, ngx.UpstreamFile())
			s.mapTo(`--nginx-container nginx($|\s)`, "--nginx-container "+ngx.Container()+"${1}")
			s.vals["web"], s.vals["url"], s.vals["nginx"] = name, ngx.URL(), ngx.Container()
			// The docker contexts the README creates go into a config
			// directory of the test's own, and the documented ssh host is
			// this test's engine (TestRemoteEngineOverSSH reaches one over
			// a real sshd).
			s.env = append(s.env, "DOCKER_CONFIG="+s.t.TempDir())
			engine := os.Getenv("DOCKER_HOST")
			if engine == "" {
				engine = "unix:///var/run/docker.sock"
			}
			s.mapTo(`host=ssh://deploy@web1\.example\.com`, "host="+engine)
			s.vals["engine"] = engine
		},
		steps: []docStep{
			{doc: "baton deploy web --image shop/web:1.4.2 --http-probe /healthz --nginx-upstream /etc/nginx/baton/web.conf --nginx-container nginx", check: func(s *docRun, _ stepOut) error {
				return all(s.runs(s.vals["web"], s.e.reg.Addr()+"/shop/web:1.4.2"), serves(s.vals["url"], "1.4.2"),
					s.labelIs(s.vals["web"], "baton.nginx-container", s.vals["nginx"]))
			}},
			{doc: "docker context create web1 --docker host=ssh://deploy@web1.example.com"},
			{doc: "baton --context web1 status web", check: func(s *docRun, out stepOut) error {
				want := fmt.Sprintf("engine: docker context %q (%s)", "web1", s.vals["engine"])
				if !strings.Contains(out.stdout, want) || !strings.Contains(out.stdout, s.vals["web"]) || !strings.Contains(out.stdout, "1.4.2") {
					return fmt.Errorf("status through the context: stdout %q, want %q and %s running 1.4.2", out.stdout, want, s.vals["web"])
				}
				return nil
			}},
		},
	}
}

// unattendedScenario: docs/unattended.md and the README's unattended block:
// an opted-in container, cron, watch, serve with a signed webhook, history.
func unattendedScenario() docScenario {
	const secret = "docs-test-secret"
	watching := func(_ *docRun, stderr string) bool { return strings.Contains(stderr, "msg=watching") }
	answering := func(s *docRun, _ string) bool {
		resp, err := http.Get("http://" + s.vals["listen"] + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	return docScenario{
		name: "docs unattended.md",
		setup: func(s *docRun) {
			name := strings.ToLower(testenv.UniqueName("docs-web-"))
			s.mapContainer("web", name)
			s.push("shop/web:stable", "stable", false)
			s.push("shop/web:1.5", "1.5", false)
			port := testenv.FreePort(s.t)
			s.mapTo(`-p 8080:8080`, fmt.Sprintf("-p %d:8080", port))
			listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(s.t))
			s.mapTo(`127\.0\.0\.1:9090`, listen)
			s.e.cleanupService(name)
			// The CI job's secret file, and the same secret for baton serve
			// (from the environment, as documented).
			if err := os.WriteFile(filepath.Join(s.dir, "secret"), []byte(secret+"\n"), 0o600); err != nil {
				s.t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(s.dir, "F"), []byte(secret+"\n"), 0o600); err != nil {
				s.t.Fatal(err)
			}
			s.env = append(s.env, "BATON_WEBHOOK_SECRET="+secret, "CI_PIPELINE_ID=4711")
			s.vals["web"], s.vals["port"], s.vals["listen"] = name, fmt.Sprint(port), listen
		},
		steps: []docStep{
			{doc: "docker run -d --name web -l baton.enable=true -p 8080:8080 registry.example/shop/web:stable", check: func(s *docRun, _ stepOut) error {
				return all(s.runs(s.vals["web"], s.e.reg.Addr()+"/shop/web:stable"), s.labelIs(s.vals["web"], "baton.enable", "true"),
					docWait(30*time.Second, func() error { return serves("http://127.0.0.1:"+s.vals["port"]+"/", "stable") }))
			}},
			{doc: `baton deploy --nginx-upstream /etc/nginx/baton/web.conf --nginx-reload "nginx -s reload" --http-probe /healthz web`,
				before: func(s *docRun) {
					up := filepath.Join(s.t.TempDir(), "etc", "nginx", "baton", "web.conf")
					if err := os.MkdirAll(filepath.Dir(up), 0o755); err != nil {
						s.t.Fatal(err)
					}
					ngx := testenv.HostNginx(s.t, testenv.NginxOpts{UpstreamFile: up, InitialServers: []string{"127.0.0.1:" + s.vals["port"]}})
					s.mapTo(`/etc/nginx/baton/web\.conf`, up)
					s.mapTo(`"nginx -s reload"`, `"`+ngx.ReloadCommand()+`"`)
					s.vals["url"], s.vals["upstream"] = ngx.URL(), up
				},
				check: func(s *docRun, _ stepOut) error {
					err := all(s.runs(s.vals["web"], s.e.reg.Addr()+"/shop/web:stable"), serves(s.vals["url"], "stable"),
						s.labelIs(s.vals["web"], "baton.nginx-upstream", s.vals["upstream"]), s.labelIs(s.vals["web"], "baton.enable", "true"))
					s.remember(s.vals["web"], "deployed")
					return err
				}},
			{doc: "baton deploy web", check: func(s *docRun, out stepOut) error {
				if !strings.Contains(out.stdout+out.stderr, "up to date") {
					return fmt.Errorf("output does not say the container is up to date")
				}
				return s.sameContainer(s.vals["web"], "deployed")
			}},
			{doc: "*/10 * * * * root baton deploy --quiet web", run: []string{"baton deploy --quiet web"}, check: func(s *docRun, out stepOut) error {
				if strings.TrimSpace(out.stderr) != "" {
					return fmt.Errorf("--quiet printed progress: %q", out.stderr)
				}
				return s.sameContainer(s.vals["web"], "deployed")
			}},
			{doc: "baton watch --interval 5m", long: true, ready: watching, check: func(s *docRun, out stepOut) error {
				// The first check runs at once: it found the tag unchanged.
				return s.sameContainer(s.vals["web"], "deployed")
			}},
			{doc: "baton watch [--interval 5m | --schedule CRON] [--all] [--scope NAME] [--retry-after 1h] [--once] [--metrics-listen ADDR] [--notify-url URL] [--pre-deploy CMD] [--post-deploy CMD] [--shutdown-timeout 5m]",
				run: []string{
					"baton watch --once --retry-after 1h --shutdown-timeout 5m",
					`baton watch --schedule "*/5 * * * *" --once`,
				},
				check: func(s *docRun, _ stepOut) error { return s.sameContainer(s.vals["web"], "deployed") }},
			{doc: `--post-deploy '/bin/sh -c "logger -t baton \"$BATON_TARGET: $BATON_OUTCOME\""'`,
				run: []string{`baton watch --once --post-deploy '/bin/sh -c "logger -t baton \"$BATON_TARGET: $BATON_OUTCOME\""'`}},
			{doc: "baton serve [--listen 127.0.0.1:9090] [--token-file F] [--secret-file F] [--query-token] [--allow-repository PATTERN]... [--max-body 1048576] [--all] [--scope NAME] ...",
				run:  []string{"baton serve --listen 127.0.0.1:9090 --token-file F --secret-file F --query-token --allow-repository registry.example/shop/web --max-body 1048576"},
				long: true, ready: answering},
			{doc: "baton serve --listen 127.0.0.1:9090", long: true, ready: answering,
				during: []docStep{{
					// "Signing a request from a CI job", whatever its lines.
					block: &docBlock{file: "docs/unattended.md", from: "body=", through: "curl "},
					check: func(s *docRun, out stepOut) error {
						if !strings.Contains(out.stdout, `"status_url"`) {
							return fmt.Errorf("the answer is not a 202 deploy id: %s", out.stdout)
						}
						return docWait(2*time.Minute, func() error {
							return all(s.runs(s.vals["web"], s.e.reg.Addr()+"/shop/web:1.5"), serves(s.vals["url"], "1.5"))
						})
					},
				}}},
			{doc: "baton history [CONTAINER] [--json] [--limit 20]", run: []string{"baton history web --json --limit 20"}, check: func(s *docRun, out stepOut) error {
				entries, err := historyJSON(out.stdout)
				if err != nil {
					return err
				}
				for _, e := range entries {
					if e["trigger"] == "webhook" && e["outcome"] == "deployed" && strings.HasPrefix(fmt.Sprint(e["who"]), "ci") {
						return nil
					}
				}
				return fmt.Errorf("history has no webhook deploy by the CI job: %v", entries)
			}},
		},
	}
}

// batonContainerScenario: docs/unattended.md's "Running baton in a
// container": the image from the Dockerfile, started as documented, watches,
// and stops with exit code 0.
func batonContainerScenario() docScenario {
	return docScenario{
		name: "baton in a container",
		setup: func(s *docRun) {
			s.dir = s.root
			img := "baton-test/docs-baton:" + strings.ToLower(testenv.UniqueName("t"))
			name := strings.ToLower(testenv.UniqueName("docs-baton-watch-"))
			s.mapTo(`-t baton \.$`, "-t "+img+" .")
			s.mapTo(`--name baton-watch `, "--name "+name+" ")
			s.mapTo(`(\s)baton watch --interval 5m$`, "${1}"+img+" watch --interval 5m")
			s.mapTo(`-v /var/lib/baton:/var/lib/baton`, "-v "+s.e.stateDir+":/var/lib/baton")
			s.mapTo(`-v /root/\.docker/config\.json:`, "-v "+filepath.Join(s.e.reg.DockerConfigDir(s.t), "config.json")+":")
			s.vals["image"], s.vals["name"] = img, name
			s.t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), time.Minute)
				defer cancel()
				_ = s.e.cli.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
				_, _ = s.e.cli.ImageRemove(ctx, img, image.RemoveOptions{Force: true})
			})
		},
		steps: []docStep{
			{doc: "make build"},
			{doc: "docker build -t baton .", check: func(s *docRun, _ stepOut) error {
				_, err := s.e.cli.ImageInspect(s.t.Context(), s.vals["image"])
				return err
			}},
			{doc: "docker run -d --name baton-watch --restart unless-stopped --network host -v /var/run/docker.sock:/var/run/docker.sock -v /var/lib/baton:/var/lib/baton -v /root/.docker/config.json:/root/.docker/config.json:ro -l baton.enable=false baton watch --interval 5m",
				check: func(s *docRun, _ stepOut) error {
					name := s.vals["name"]
					err := docWait(60*time.Second, func() error {
						logs, err := s.containerLogs(name)
						if err != nil {
							return err
						}
						if !strings.Contains(logs, "msg=watching") {
							return fmt.Errorf("container %s does not log that it watches; logs:\n%s", name, logs)
						}
						return nil
					})
					if err != nil {
						return err
					}
					timeout := 60
					if err := s.e.cli.ContainerStop(s.t.Context(), name, container.StopOptions{Timeout: &timeout}); err != nil {
						return err
					}
					c, err := s.inspect(name)
					if err != nil {
						return err
					}
					if c.State.ExitCode != 0 {
						logs, _ := s.containerLogs(name)
						return fmt.Errorf("baton in its container exited %d on docker stop, the docs say 0; logs:\n%s", c.State.ExitCode, logs)
					}
					return nil
				}},
		},
	}
}

func (s *docRun) containerLogs(name string) (string, error) {
	rc, err := s.e.cli.ContainerLogs(s.t.Context(), name, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := stdcopy.StdCopy(&b, &b, rc); err != nil {
		return "", err
	}
	return b.String(), nil
}

// composeScenario runs a compose example's README with Compose v2, from a
// copy of compose-examples whose image names point at the test registry.
func composeScenario(example string) docScenario {
	whoami := func(s *docRun, tag string) string { return s.e.reg.Addr() + "/traefik/whoami:" + tag }
	ctr := func(s *docRun, service string, n int) string {
		return fmt.Sprintf("%s-%s-%d", s.vals["project"], service, n)
	}
	once := "baton deploy -p shop -f docker-compose.yml --upstream-dir ./baton --nginx-upstream ./baton/web.conf --nginx-service nginx web"
	steps := []docStep{
		{doc: "cd compose-examples/" + example},
		{doc: "docker compose -p shop up -d"},
	}
	if example == "01-nginx-web" {
		steps = append(steps, docStep{doc: "curl http://127.0.0.1:8080/", retry: 60 * time.Second, check: func(s *docRun, out stepOut) error {
			if !strings.HasPrefix(out.stdout, "v1.10 ") {
				return fmt.Errorf("answered %q, want the app v1.10", out.stdout)
			}
			return nil
		}})
	}
	steps = append(steps, docStep{doc: once, check: func(s *docRun, _ stepOut) error {
		up, err := os.ReadFile(filepath.Join(s.dir, "baton", "web.conf"))
		if err != nil {
			return err
		}
		want := map[string]int{"02-replicas-worker": 2}[example]
		if want == 0 {
			want = 1
		}
		if n := strings.Count(string(up), "server "); n != want || strings.Contains(string(up), "server web:80") {
			return fmt.Errorf("baton/web.conf should name %d relay(s) now:\n%s", want, up)
		}
		return docWait(30*time.Second, func() error { return serves(s.vals["url"], "v1.10") })
	}})
	steps = append(steps, docStep{doc: "WEB_TAG=v1.11 baton deploy -p shop -f docker-compose.yml web", check: func(s *docRun, out stepOut) error {
		replicas := 1
		if example == "02-replicas-worker" {
			replicas = 2
			if !strings.Contains(out.stderr, "replica 1 of 2") || !strings.Contains(out.stderr, "replica 2 of 2") {
				return fmt.Errorf("replicas not deployed one at a time")
			}
		}
		for n := 1; n <= replicas; n++ {
			if err := s.runs(ctr(s, "web", n), whoami(s, "v1.11")); err != nil {
				return err
			}
		}
		return serves(s.vals["url"], "v1.11")
	}})
	switch example {
	case "01-nginx-web":
		// The README's compose lines, in this example's directory: without
		// WEB_TAG the file names v1.10 again, so web goes back to it.
		steps = append(steps,
			docStep{doc: "baton deploy -f docker-compose.yml web", check: func(s *docRun, _ stepOut) error {
				return all(s.runs(ctr(s, "web", 1), whoami(s, "v1.10")), serves(s.vals["url"], "v1.10"))
			}},
			docStep{doc: "baton deploy -f docker-compose.yml --all", check: func(s *docRun, out stepOut) error {
				if !strings.Contains(out.stdout, "web: up-to-date") {
					return fmt.Errorf("--all should find web up to date")
				}
				return s.runs(ctr(s, "web", 1), whoami(s, "v1.10"))
			}})
	case "02-replicas-worker":
		steps = append(steps, docStep{doc: "WEB_TAG=v1.11 WORKER_TAG=v1.11 baton deploy -p shop -f docker-compose.yml --all", check: func(s *docRun, out stepOut) error {
			if !strings.Contains(out.stdout, "worker: deployed") {
				return fmt.Errorf("--all did not deploy the worker")
			}
			return all(s.runs(ctr(s, "worker", 1), whoami(s, "v1.11")), s.runs(ctr(s, "web", 1), whoami(s, "v1.11")), s.runs(ctr(s, "web", 2), whoami(s, "v1.11")))
		}})
	case "03-postgres":
		steps = append(steps, docStep{doc: "PG_TAG=17-alpine baton deploy -p shop -f docker-compose.yml db", want: 2,
			before: func(s *docRun) { s.remember(ctr(s, "db", 1), "db") },
			check: func(s *docRun, out stepOut) error {
				if !strings.Contains(out.stderr, "is a database (postgres)") {
					return fmt.Errorf("the refusal does not say the container is a database")
				}
				return all(s.sameContainer(ctr(s, "db", 1), "db"), s.runs(ctr(s, "db", 1), s.e.reg.Addr()+"/postgres:16-alpine"))
			}})
	}
	return docScenario{
		name: "compose-examples " + example,
		setup: func(s *docRun) {
			copyTree(s.t, filepath.Join(s.root, "compose-examples"), filepath.Join(s.dir, "compose-examples"))
			// Image names: the public images the files name are served by
			// the test registry under the same repositories and tags.
			imageRe := regexp.MustCompile(`(?m)^(\s*image:\s*)(traefik/whoami|nginx|postgres):`)
			file := filepath.Join(s.dir, "compose-examples", example, "docker-compose.yml")
			data, err := os.ReadFile(file)
			if err != nil {
				s.t.Fatal(err)
			}
			if err := os.WriteFile(file, imageRe.ReplaceAll(data, []byte("${1}"+s.e.reg.Addr()+"/${2}:")), 0o644); err != nil {
				s.t.Fatal(err)
			}
			s.push("traefik/whoami:v1.10", "v1.10", true)
			s.push("traefik/whoami:v1.11", "v1.11", true)
			s.e.reg.Push(s.t, s.e.cli, testenv.NginxImage(s.t, s.e.cli), "nginx:1.27-alpine")
			if example == "03-postgres" {
				s.push("postgres:16-alpine", "pg16", false)
				s.push("postgres:17-alpine", "pg17", false)
			}
			project := "docs" + strings.ToLower(strings.TrimPrefix(testenv.UniqueName(""), "-"))
			s.mapTo(`-p shop `, "-p "+project+" ")
			port := testenv.FreePort(s.t)
			s.mapTo(`127\.0\.0\.1:8080`, fmt.Sprintf("127.0.0.1:%d", port))
			s.env = append(s.env, fmt.Sprintf("HTTP_PORT=%d", port))
			s.vals["project"], s.vals["url"] = project, fmt.Sprintf("http://127.0.0.1:%d/", port)
			dir := filepath.Join(s.dir, "compose-examples", example)
			s.t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), 2*time.Minute)
				defer cancel()
				down := exec.CommandContext(ctx, "docker", "compose", "-p", project, "down", "--volumes", "--remove-orphans", "-t", "1")
				down.Dir, down.Env = dir, s.environ()
				out, err := down.CombinedOutput()
				s.t.Logf("compose down: %s %v", strings.TrimSpace(string(out)), err)
				s.removeProjectRelays(ctx, project)
				// The project's service (and kernel) networks: each holds
				// one of the engine's few address pools, and a later
				// deploy's prune only takes them 10 minutes on.
				if err := testenv.RemoveServiceNetworks(ctx, s.e.cli, project); err != nil {
					s.t.Logf("cleanup: %v", err)
				}
			})
		},
		steps: steps,
	}
}

func (s *docRun) removeProjectRelays(ctx context.Context, project string) {
	list, err := s.e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "baton.role=relay"))})
	if err != nil {
		return
	}
	for _, c := range list {
		if strings.Contains(c.Names[0], project) {
			_ = s.e.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			// The relay keeps its state in a named volume (traffic.RelayVolume),
			// which RemoveVolumes (anonymous ones only) leaves.
			_ = s.e.cli.VolumeRemove(ctx, strings.TrimPrefix(c.Names[0], "/")+"-state", true)
		}
	}
	nets, err := s.e.cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return
	}
	for _, n := range nets {
		if strings.HasPrefix(n.Name, "baton-warm-") && strings.Contains(n.Name, project) {
			_ = s.e.cli.NetworkRemove(ctx, n.ID)
		}
	}
}

// copyTree copies a directory of regular files.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		copyFile(t, p, filepath.Join(to, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
