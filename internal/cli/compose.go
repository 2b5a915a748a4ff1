package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/internal/compose"
	"github.com/baton-sh/baton/internal/deploy"
)

type composeOptions struct {
	files        []string
	project      string
	projectDir   string
	all          bool
	nginxService string
}

func (o composeOptions) enabled() bool {
	return len(o.files) > 0 || o.project != "" || o.all || o.projectDir != ""
}

func composeFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringSliceFlag{Name: "compose-file", Aliases: []string{"f"}, Usage: "compose `FILE` (repeat for overrides, as compose takes them); the argument is then a SERVICE", Category: "Compose"},
		&ucli.StringFlag{Name: "project-name", Aliases: []string{"p"}, Usage: "compose project `NAME`", DefaultText: "the project running the file's service", Category: "Compose"},
		&ucli.StringFlag{Name: "project-directory", Usage: "compose project `DIR`", DefaultText: "the one its containers were created in", Category: "Compose"},
		&ucli.BoolFlag{Name: "all", Usage: "deploy every service of the project whose image or configuration changed, in depends_on order", Category: "Compose"},
		&ucli.StringFlag{Name: "nginx-service", Usage: "nginx runs as compose service `NAME` of the same project (its container gets HUP)", Category: "Compose"},
	}
}

func composeOptionsFrom(c *ucli.Context) composeOptions {
	return composeOptions{
		files: c.StringSlice("compose-file"), project: c.String("project-name"), projectDir: c.String("project-directory"),
		all: c.Bool("all"), nginxService: c.String("nginx-service"),
	}
}

func runComposeDeploy(c *ucli.Context, opts deployOptions) error {
	co := opts.compose
	switch {
	case co.all && c.NArg() > 0:
		return usageErr("--all deploys every service; do not name one (got %s)", strings.Join(c.Args().Slice(), " "))
	case !co.all && c.NArg() != 1:
		return usageErr("name one compose SERVICE (got %d arguments), or use --all", c.NArg())
	}
	if co.all {
		for _, name := range []string{"port", "http-probe", "tcp-probe", "warmup-requests", "nginx-upstream", "nginx-reload", "nginx-container", "relay", "relay-port", "relay-address", "kernel-path"} {
			if _, given := opts.settings[name]; given || co.nginxService != "" {
				return usageErr("--%s applies to one service; with --all each service's settings come from its baton.* labels (in the compose file, or recorded by its last deploy)", map[bool]string{true: "nginx-service", false: name}[co.nginxService != ""])
			}
		}
	}
	out := newOutput(c.App.Writer, c.App.ErrWriter, opts.json, opts.quiet)
	pull, err := deploy.ParsePullPolicy(opts.pull)
	if err != nil {
		return deployErr(err)
	}
	if up := opts.settings["nginx-upstream"]; up != "" && !filepath.IsAbs(up) {
		abs, err := filepath.Abs(up)
		if err != nil {
			return usageErr("--nginx-upstream %s: %v", up, err)
		}
		opts.settings["nginx-upstream"] = abs
	}
	// Bad flag values are bad input whether or not the engine answers:
	// refused before it is reached, the state directory opened or the
	// environment exported.
	if swarmFlagSet(c) != "" {
		if err := checkSwarmValues(c); err != nil {
			return err
		}
	}
	if c.Bool("swarm") {
		if err := notForStack(co); err != nil {
			return err
		}
	}
	d, eng, err := newDeployer(c, out)
	if err != nil {
		return err
	}
	defer eng.Close()
	if !co.all {
		stack, name, err := stackTarget(c, eng, co, c.Args().First())
		if err != nil {
			return err
		} else if stack != nil {
			if err := notForStack(co); err != nil {
				return err
			}
			opts.target = name
			return runSwarmDeploy(c, eng, opts, pull, stack)
		}
	}
	if name := swarmFlagSet(c); name != "" {
		return usageErr("--%s is for a Swarm service; -f/-p/--project-directory name a compose project (for a stack, deploy its service by name)", name)
	}
	copts := compose.Options{Files: co.files, ProjectName: co.project, ProjectDir: co.projectDir}
	var project *compose.Project
	var cfg *compose.Config
	if co.all {
		project, cfg, err = compose.ResolveProject(c.Context, eng, copts)
	} else if project, err = compose.Resolve(c.Context, eng, copts, c.Args().First()); err == nil {
		cfg, err = project.Config(c.Context)
	}
	if err != nil {
		return deployErr(onEngine(eng, err))
	}
	if co.nginxService != "" {
		reps, err := project.Replicas(c.Context, eng, co.nginxService)
		if err != nil || len(reps) == 0 {
			return deployErr(onEngine(eng, deploy.Classify(deploy.ErrNotFound, "--nginx-service %s: no container of that service in project %s", co.nginxService, project.Name)))
		}
		opts.settings["nginx-container"] = strings.TrimPrefix(reps[0].Names[0], "/")
	}
	out.note(fmt.Sprintf("compose project %s (%s, %s)", project.Name, strings.Join(project.Files, ", "), project.Tool))
	req := deploy.Request{Image: opts.image, Pull: pull, Force: opts.force, DryRun: opts.dryRun, Flags: opts.settings, PullProgress: out.pullProgress(), Trigger: "cli"}
	report := func(msg string) { out.Event(deploy.Event{Time: time.Now(), Phase: "compose", Message: msg}) }
	var results []compose.ServiceResult
	if co.all {
		results, err = compose.DeployAll(c.Context, d, eng, project, cfg, req, report)
	} else {
		var r compose.ServiceResult
		r, err = compose.DeployService(c.Context, d, eng, project, cfg, c.Args().First(), req, report)
		results = []compose.ServiceResult{r}
	}
	out.composeResults(project.Name, results)
	return deployErr(onEngine(eng, err))
}

// notForStack refuses the compose-only flags for a stack's service, whose
// spec comes from its stack file (they would be silently ignored).
func notForStack(co composeOptions) error {
	switch {
	case co.nginxService != "":
		return usageErr("--nginx-service is for a compose project; a stack's service is reached by its nginx through Swarm (tasks.SERVICE)")
	case co.projectDir != "":
		return usageErr("--project-directory is for a compose project; a stack file's paths are relative to the file (give its path with -f)")
	}
	return nil
}
