package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/compose"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/redact"
	"github.com/baton-sh/baton/internal/swarmdeploy"
)

// stackTarget says whether `deploy -f FILE SERVICE` names a service of a
// `docker stack deploy` stack (a Swarm service <stack>_<service> labelled
// with its stack; -p names the stack when several have the service) rather
// than a compose project's. An engine that cannot say (no swarm manager,
// not answering) leaves the compose path to report on it.
func stackTarget(c *ucli.Context, eng *dockerctl.Client, co composeOptions, service string) (*swarmdeploy.Stack, string, error) {
	name, ns, found, err := swarmdeploy.FindStackService(c.Context, eng, co.project, service)
	switch {
	case errors.Is(err, deploy.ErrInvalid): // the service is in several stacks
		return nil, "", usageErr("%v", err)
	case err != nil || !found:
		if c.Bool("swarm") {
			return nil, "", usageErr("--swarm -f: no stack has a service %s on this engine (docker stack services STACK)", service)
		}
		return nil, "", nil
	}
	files := make([]string, len(co.files))
	for i, f := range co.files {
		if f == "-" { // the standard input, as the docker CLI reads it
			files[i] = f
			continue
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, "", usageErr("-f %s: %v", f, err)
		}
		files[i] = abs
	}
	if !c.Bool("swarm") {
		ofFiles, projects, err := compose.ServiceProjects(c.Context, eng, files, service)
		if err != nil {
			return nil, "", deployErr(onEngine(eng, err))
		}
		if stack, err := stackOrCompose(co.project, ns, service, ofFiles, projects); err != nil || !stack {
			return nil, "", err
		}
	}
	if len(co.files) == 0 {
		return nil, "", usageErr("service %s is in stack %s: give its stack file with -f (the spec comes from it)", service, ns)
	}
	return &swarmdeploy.Stack{Name: ns, Service: service, Files: files, Docker: dockerCLI(eng.Endpoint)}, name, nil
}

// stackOrCompose decides whether deploy -f FILE SERVICE goes to service of
// stack ns (which has it) or to the compose project running it, given the
// compose projects that run a service of that name and whether one was
// made from the file. A stack found only by the service's name must not
// take over a compose file's deploy: an unrelated stack (monitoring_web)
// would get the compose file's web. Without -p the stack path is taken only
// when no compose project runs the service; the file's own project wins;
// any other project makes it ambiguous. -p naming the stack is explicit,
// unless a compose project has that name too. --swarm (checked by the
// caller) always means the stack.
func stackOrCompose(project, ns, service string, ofFiles bool, projects []string) (stack bool, err error) {
	switch {
	case project != "" && slices.Contains(projects, project):
		return false, usageErr("-p %s names both a stack and a compose project that have a service %s: add --swarm to deploy the stack's", project, service)
	case project != "":
		return true, nil
	case ofFiles:
		return false, nil
	case len(projects) > 0:
		return false, usageErr("service %s is in stack %s and in compose project %s, and this file started neither: name the stack with -p %s (or the project with -p)", service, ns, strings.Join(projects, ", "), ns)
	}
	return true, nil
}

// dockerCLI runs the docker CLI (docker stack config/deploy) against the
// engine baton resolved and checked, whichever way it was named (--context
// before or after the verb, DOCKER_CONTEXT, docker context use): the CLI is
// told that engine itself rather than left to pick from an environment
// that may name another (a `docker context use prod` under an explicit
// --context default).
func dockerCLI(ep dockerctl.Endpoint) func(ctx context.Context, dir string, stdin []byte, args ...string) ([]byte, error) {
	global := dockerGlobal(ep)
	return func(ctx context.Context, dir string, stdin []byte, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "docker", append(append([]string{}, global...), args...)...)
		cmd.Dir = dir
		// The stack file reads its variables from the environment;
		// baton's secrets are none of them.
		cmd.Env = redact.ToolEnviron(os.Environ())
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		} else {
			cmd.Stdin = os.Stdin // -f -: the file is baton's input
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			msg := strings.Join(strings.Fields(stderr.String()), " ")
			if msg == "" {
				msg = err.Error()
			}
			return stdout.Bytes(), fmt.Errorf("docker %s: %s", strings.Join(args[:min(2, len(args))], " "), msg)
		}
		return stdout.Bytes(), nil
	}
}

// dockerGlobal is the docker CLI's global flags naming ep's engine.
// DOCKER_HOST (ep named EnvContext) is in the child's environment already
// and wins over any current context, as it did for baton; a hosts file's
// docker-host= has no context to name.
func dockerGlobal(ep dockerctl.Endpoint) []string {
	switch ep.Name {
	case dockerctl.EnvContext:
		return nil
	case dockerctl.HostsFileEngine:
		return []string{"--host", ep.Host}
	}
	return []string{"--context", ep.Name}
}
