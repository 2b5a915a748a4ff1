package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/cli/cli/config"

	"github.com/baton-sh/baton/dockerctl"
)

// fakeDocker puts a docker on PATH that prints its arguments and the
// engine variables it got, one per line.
func fakeDocker(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\necho \"DOCKER_HOST=$DOCKER_HOST\"\n"
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// The docker CLI that renders and deploys a stack talks to the engine baton
// resolved and checked, named to it explicitly: an explicit --context
// default (before the verb, where the deploy command's own flag does not
// see it) must not let `docker context use prod` or DOCKER_CONTEXT pick
// another engine for the subprocess.
func TestDockerCLINamesTheEngine(t *testing.T) {
	fakeDocker(t)
	t.Setenv("DOCKER_CONTEXT", "prod")
	t.Setenv("DOCKER_HOST", "")
	for _, tc := range []struct {
		ep   dockerctl.Endpoint
		want string
	}{
		{dockerctl.Endpoint{Name: dockerctl.DefaultContext, Host: "unix:///var/run/docker.sock"}, "--context default stack config"},
		{dockerctl.Endpoint{Name: "staging", Host: "ssh://deploy@web2"}, "--context staging stack config"},
		{dockerctl.Endpoint{Name: dockerctl.HostsFileEngine, Host: "tcp://10.0.0.5:2375"}, "--host tcp://10.0.0.5:2375 stack config"},
	} {
		out, err := dockerCLI(tc.ep)(t.Context(), t.TempDir(), nil, "stack", "config")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if got := strings.Join(lines[:len(lines)-1], " "); got != tc.want {
			t.Errorf("%s: docker %s, want docker %s", tc.ep.Name, got, tc.want)
		}
	}
	// DOCKER_HOST chose the engine: the child has it and no context flag
	// (DOCKER_HOST wins over DOCKER_CONTEXT for the docker CLI too).
	t.Setenv("DOCKER_HOST", "tcp://10.0.0.9:2375")
	out, err := dockerCLI(dockerctl.Endpoint{Name: dockerctl.EnvContext, Host: "tcp://10.0.0.9:2375"})(t.Context(), t.TempDir(), nil, "stack", "config")
	if err != nil || string(out) != "stack\nconfig\nDOCKER_HOST=tcp://10.0.0.9:2375\n" {
		t.Errorf("DOCKER_HOST engine: %v, docker got %q", err, out)
	}
}

// A stack found by the service's name alone must not take over a compose
// file's deploy; each refusal is exit 2, with its positive control.
func TestStackOrCompose(t *testing.T) {
	for _, tc := range []struct {
		name     string
		project  string
		ofFiles  bool
		projects []string
		stack    bool
		err      string
	}{
		{name: "only a stack has the service", stack: true},
		{name: "the file's compose project runs it", ofFiles: true, projects: []string{"myapp"}},
		{name: "another compose project runs it", projects: []string{"other"}, err: "name the stack with -p monitoring"},
		{name: "-p names the stack", project: "monitoring", projects: []string{"other"}, stack: true},
		{name: "-p names a stack and a project", project: "monitoring", projects: []string{"monitoring"}, err: "add --swarm"},
	} {
		stack, err := stackOrCompose(tc.project, "monitoring", "web", tc.ofFiles, tc.projects)
		if tc.err != "" {
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want exit 2 with %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || stack != tc.stack {
			t.Errorf("%s: stack %v, err %v; want stack %v", tc.name, stack, err, tc.stack)
		}
	}
}

// Bad Swarm flag values and compose-only flags for a stack are bad input
// (exit 2) even when the engine does not answer; the positive control is a
// good value, which gets as far as the engine (exit 1, cannot reach it).
func TestComposeStackFlagsCheckedBeforeTheEngine(t *testing.T) {
	dir := t.TempDir()
	prev := config.Dir()
	config.SetDir(dir)
	t.Cleanup(func() { config.SetDir(prev) })
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(dir, "no-engine.sock"))
	t.Setenv("DOCKER_CONTEXT", "")
	file := filepath.Join(dir, "stack.yml")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"deploy", "-f", file, "web", "--update-failure-action", "explode"}, 2, "--update-failure-action"},
		{[]string{"deploy", "-f", file, "web", "--probe-cmd", "'unclosed", "--http-probe", "/"}, 2, "--probe-cmd"},
		{[]string{"deploy", "web", "--update-failure-action", "explode"}, 2, "--update-failure-action"},
		{[]string{"deploy", "-f", file, "web", "--swarm", "--nginx-service", "nginx"}, 2, "--nginx-service is for a compose project"},
		{[]string{"deploy", "-f", file, "web", "--swarm", "--project-directory", dir}, 2, "--project-directory is for a compose project"},
		{[]string{"deploy", "-f", file, "web", "--update-failure-action", "pause"}, 1, "cannot reach"},
	} {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"baton", "--state-dir", t.TempDir()}, tc.args...), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("baton %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tc.args, " "), code, stderr.String(), tc.code, tc.want)
		}
	}
}
