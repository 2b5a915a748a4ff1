package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/dockerctl"
)

// contextFlag is --context, both a global flag and one of every verb that
// talks to an engine, so it goes anywhere on the line. It is repeatable for
// the multi-host rollout (issue 10); one run talks to one engine for now.
func contextFlag() ucli.Flag {
	return &ucli.StringSliceFlag{
		Name:        "context",
		Usage:       "the docker context `NAME` of the engine to talk to (docker context ls)",
		DefaultText: "the docker CLI's own choice: DOCKER_HOST, DOCKER_CONTEXT, docker context use, else /var/run/docker.sock",
		Category:    "Engine",
	}
}

// engineContexts is every --context given, at any level of the command line.
func engineContexts(c *ucli.Context) []string {
	var names []string
	lineage := c.Lineage() // this command first; the line's order is the reverse
	slices.Reverse(lineage)
	for _, cc := range lineage {
		for _, n := range cc.StringSlice("context") {
			n = strings.TrimSpace(n)
			if n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// resolveEngine picks the engine this run talks to: the one --context
// names, else the docker CLI's own choice. An unknown context is bad input
// (exit 2, nothing touched).
func resolveEngine(c *ucli.Context) (dockerctl.Endpoint, error) {
	names := engineContexts(c)
	if len(names) > 1 {
		return dockerctl.Endpoint{}, usageErr("more than one --context (%s): this command talks to one engine at a time; give one --context", strings.Join(names, ", "))
	}
	name := ""
	if len(names) == 1 {
		name = names[0]
	}
	ep, err := dockerctl.ResolveEndpoint(name)
	if err != nil {
		if errors.Is(err, dockerctl.ErrUnknownContext) || name != "" {
			return ep, &exitError{code: 2, err: err}
		}
		return ep, err
	}
	return ep, nil
}

// onEngine names the engine in an error from a run that talked to it, so
// that with several engines (contexts, DOCKER_HOST) the user knows which
// one failed.
func onEngine(eng *dockerctl.Client, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", eng.Endpoint, err)
}
