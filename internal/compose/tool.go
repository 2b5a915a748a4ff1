// Package compose deploys docker-compose services with baton: it finds a
// service's containers from a compose file or a project name, asks the
// compose tool that created them what it would create now (configuration
// and labels), and hands each replica to the deploy state machine, so that
// afterwards compose still owns the service: ps, logs and down see the new
// container and `up -d` leaves it alone.
package compose

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/baton-sh/baton/internal/redact"
)

// Tool is a compose command line: Compose v2 (`docker compose`) or the
// Python v1 (`docker-compose`). The two compute config hashes differently,
// and each recreates every container the other made, so baton always uses
// the one that created the project's containers.
type Tool struct {
	Argv    []string
	Major   int
	Version string
}

func (t Tool) String() string { return strings.Join(t.Argv, " ") + " " + t.Version }

var (
	toolV2 = []string{"docker", "compose"}
	toolV1 = []string{"docker-compose"}
)

// ToolFor returns the installed tool matching a container's
// com.docker.compose.version label (1.x: docker-compose; else v2).
func ToolFor(ctx context.Context, versionLabel string) (Tool, error) {
	want := 2
	if strings.HasPrefix(versionLabel, "1.") {
		want = 1
	}
	for _, argv := range [][]string{toolV2, toolV1} {
		v, err := toolVersion(ctx, argv)
		if err != nil {
			continue
		}
		if major(v) == want {
			return Tool{Argv: argv, Major: want, Version: v}, nil
		}
	}
	if want == 1 {
		return Tool{}, fmt.Errorf("the project's containers were created by docker-compose %s (v1), which is not installed here; install it (apt-get install docker-compose) so baton computes the same config hashes", versionLabel)
	}
	return Tool{}, fmt.Errorf("the project's containers were created by Docker Compose %s (v2), which is not installed here (docker compose version fails)", versionLabel)
}

// AnyTool returns an installed compose, v2 first.
func AnyTool(ctx context.Context) (Tool, error) {
	for _, argv := range [][]string{toolV2, toolV1} {
		if v, err := toolVersion(ctx, argv); err == nil {
			return Tool{Argv: argv, Major: major(v), Version: v}, nil
		}
	}
	return Tool{}, fmt.Errorf("no compose tool found: neither docker compose nor docker-compose runs")
}

func toolVersion(ctx context.Context, argv []string) (string, error) {
	args := append(append([]string{}, argv[1:]...), "version", "--short")
	cmd := exec.CommandContext(ctx, argv[0], args...)
	cmd.Env = redact.ToolEnviron(os.Environ())
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	if v == "" || major(v) == 0 {
		return "", fmt.Errorf("unexpected version %q", out)
	}
	return v, nil
}

func major(v string) int {
	switch {
	case strings.HasPrefix(v, "1."):
		return 1
	case strings.HasPrefix(v, "2."), strings.HasPrefix(v, "3."):
		return 2
	}
	return 0
}

// run runs the tool with the global args, then the subcommand and its args,
// and returns stdout. A failure carries the tool's own error lines, which
// name the problem in the file.
func (t Tool) run(ctx context.Context, dir string, global []string, sub string, args ...string) ([]byte, error) {
	stdout, _, err := t.runWarnings(ctx, dir, global, sub, args...)
	return stdout, err
}

// runWarnings is run that also returns the tool's stderr (its warnings).
func (t Tool) runWarnings(ctx context.Context, dir string, global []string, sub string, args ...string) ([]byte, string, error) {
	all := append(append(append(append([]string{}, t.Argv[1:]...), global...), sub), args...)
	cmd := exec.CommandContext(ctx, t.Argv[0], all...)
	cmd.Dir = dir
	// The tool reads the project's variables from the environment (which
	// may be named BATON_*); baton's secrets (BATON_WEBHOOK_TOKEN, ...) are
	// none of them.
	cmd.Env = redact.ToolEnviron(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), stderr.String(), fmt.Errorf("%s %s: %s", strings.Join(t.Argv, " "), sub, toolError(stderr.String(), err))
	}
	return stdout.Bytes(), stderr.String(), nil
}

// unsetVariables picks, from the tool's warnings, the variables the file
// uses that were not set (both tools say "The X variable is not set").
func unsetVariables(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		_, rest, ok := strings.Cut(l, "The ")
		if !ok || !strings.Contains(rest, " variable is not set") {
			continue
		}
		name, _, _ := strings.Cut(rest, " variable is not set")
		name = strings.Trim(name, `\"'`)
		if name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// toolError picks the line of the tool's stderr that says what is wrong.
func toolError(stderr string, err error) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "WARNING") || strings.Contains(l, "level=warning") {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return err.Error()
	}
	return strings.Join(lines, " ")
}
