package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/deploy"
)

// Compose's container labels.
const (
	LabelProject     = "com.docker.compose.project"
	LabelService     = "com.docker.compose.service"
	LabelNumber      = "com.docker.compose.container-number"
	LabelOneoff      = "com.docker.compose.oneoff"
	LabelConfigHash  = "com.docker.compose.config-hash"
	LabelVersion     = "com.docker.compose.version"
	LabelWorkingDir  = "com.docker.compose.project.working_dir"
	LabelConfigFiles = "com.docker.compose.project.config_files"
	LabelImage       = "com.docker.compose.image" // v2: the local image ID
	LabelReplace     = "com.docker.compose.replace"
)

// Engine is what compose targeting needs from Docker.
type Engine interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
}

// composeOwned drops the containers whose compose project or service label
// is their image's own: an image's author cannot make a container part of
// the operator's project (and so deployed, or asked about, with it).
func composeOwned(ctx context.Context, eng Engine, list []container.Summary) ([]container.Summary, error) {
	out := make([]container.Summary, 0, len(list))
	for _, c := range list {
		il, err := deploy.ImageLabels(ctx, eng, c.ImageID)
		if err != nil {
			return nil, err
		}
		if own, _ := deploy.OwnLabels(c.Labels, il); own[LabelProject] == "" || own[LabelService] == "" {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// Options is how the user named the project.
type Options struct {
	Files       []string // -f, as compose takes them
	ProjectName string   // -p
	ProjectDir  string   // --project-directory
}

// Project is a compose project as baton drives it: always with the tool,
// project name, directory and files its containers were created with.
type Project struct {
	Name  string
	Dir   string
	Files []string
	Tool  Tool
}

func (p *Project) global() []string {
	args := []string{"-p", p.Name}
	if p.Dir != "" {
		args = append(args, "--project-directory", p.Dir)
	}
	for _, f := range p.Files {
		args = append(args, "-f", f)
	}
	return args
}

func (p *Project) run(ctx context.Context, sub string, args ...string) ([]byte, error) {
	return p.Tool.run(ctx, p.Dir, p.global(), sub, args...)
}

// Config renders the project's compose file with the tool.
func (p *Project) Config(ctx context.Context) (*Config, error) {
	out, err := p.run(ctx, "config")
	if err != nil {
		return nil, classify(deploy.ErrInvalid, "compose file %s: %v", strings.Join(p.Files, ", "), err)
	}
	return ParseConfig(out)
}

// Hash asks the tool for a service's config hash, as its `up` would label it.
func (p *Project) Hash(ctx context.Context, service string) (string, error) {
	var out []byte
	var err error
	if p.Tool.Major == 1 {
		out, err = p.run(ctx, "config", "--hash="+service)
	} else {
		out, err = p.run(ctx, "config", "--hash", service)
	}
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(out))
	if len(f) != 2 || f[0] != service {
		return "", fmt.Errorf("%s config --hash %s printed %q", p.Tool.Argv[0], service, strings.TrimSpace(string(out)))
	}
	return f[1], nil
}

// Resolve finds the project that holds service: from -p, or from the
// running containers whose compose files are opts.Files. The tool is the one
// that created those containers.
func Resolve(ctx context.Context, eng Engine, opts Options, service string) (*Project, error) {
	if service == "" {
		return nil, classify(deploy.ErrInvalid, "no service named; usage: baton deploy -f docker-compose.yml SERVICE (or --all)")
	}
	files, err := absFiles(opts.Files, opts.ProjectDir)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		// Check the file and the service first, so a typo is reported as
		// one rather than as a service with no containers.
		if err := checkService(ctx, files, opts, service); err != nil {
			return nil, err
		}
	}
	list, err := eng.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelService+"="+service),
		filters.Arg("label", LabelOneoff+"=False"))})
	if err == nil {
		list, err = composeOwned(ctx, eng, list)
	}
	if err != nil {
		return nil, fmt.Errorf("listing compose containers: %w", err)
	}
	var match *container.Summary
	var others []string
	for i := range list {
		c := &list[i]
		switch {
		case opts.ProjectName != "" && c.Labels[LabelProject] == opts.ProjectName:
			match = c
		case opts.ProjectName == "" && len(files) > 0 && sameFiles(files, c.Labels):
			match = c
		default:
			others = append(others, c.Labels[LabelProject])
		}
		if match != nil {
			break
		}
	}
	if match == nil {
		return nil, notFound(opts, files, service, others)
	}
	p, err := projectOf(ctx, match.Labels, files, opts.ProjectDir)
	if err != nil {
		return nil, err
	}
	cfg, err := p.Config(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.Services[service]; !ok {
		return nil, classify(deploy.ErrNotFound, "service %q is not in %s (its services: %s)", service, strings.Join(p.Files, ", "), strings.Join(cfg.Names(), ", "))
	}
	return p, nil
}

// projectOf is the project a compose container belongs to, as its labels
// say (name, directory, files), driven by the tool that created it; files
// and dir, when given, override the labels as -f and --project-directory do.
func projectOf(ctx context.Context, labels map[string]string, files []string, dir string) (*Project, error) {
	p := &Project{Name: labels[LabelProject], Dir: labels[LabelWorkingDir], Files: files}
	if len(p.Files) == 0 {
		p.Files = labelFiles(labels)
	}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, classify(deploy.ErrInvalid, "--project-directory %s: %v", dir, err)
		}
		p.Dir = abs
	}
	tool, err := ToolFor(ctx, labels[LabelVersion])
	if err != nil {
		return nil, classify(deploy.ErrInvalid, "project %s: %v", p.Name, err)
	}
	p.Tool = tool
	return p, nil
}

// checkService renders the files with any installed compose tool and checks
// they define service.
func checkService(ctx context.Context, files []string, opts Options, service string) error {
	cfg, _, err := renderFiles(ctx, files, opts)
	if err != nil {
		return err
	}
	if _, ok := cfg.Services[service]; !ok {
		return classify(deploy.ErrNotFound, "service %q is not in %s (its services: %s)", service, strings.Join(files, ", "), strings.Join(cfg.Names(), ", "))
	}
	return nil
}

// renderFiles renders the user's compose files with any installed tool,
// before the project's containers (and so the tool that made them) are known.
func renderFiles(ctx context.Context, files []string, opts Options) (*Config, Tool, error) {
	tool, err := AnyTool(ctx)
	if err != nil {
		return nil, Tool{}, err
	}
	probe := &Project{Name: opts.ProjectName, Dir: opts.ProjectDir, Files: files, Tool: tool}
	if probe.Name == "" {
		probe.Name = "baton-probe"
	}
	if probe.Dir == "" {
		probe.Dir = filepath.Dir(files[0])
	}
	cfg, err := probe.Config(ctx)
	return cfg, tool, err
}

// ResolveProject is Resolve for a whole project (--all): any service's
// containers identify it.
func ResolveProject(ctx context.Context, eng Engine, opts Options) (*Project, *Config, error) {
	files, err := absFiles(opts.Files, opts.ProjectDir)
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 && opts.ProjectName == "" {
		return nil, nil, classify(deploy.ErrInvalid, "--all needs the compose file (-f) or the project name (-p)")
	}
	// Render the file first: a broken file is reported as such, and its
	// services name the containers to look for.
	if len(files) > 0 {
		cfg, tool, err := renderFiles(ctx, files, opts)
		if err != nil {
			return nil, nil, err
		}
		for _, svc := range cfg.Names() {
			if p, err := Resolve(ctx, eng, opts, svc); err == nil {
				cfg, err := p.Config(ctx)
				return p, cfg, err
			} else if !errors.Is(err, deploy.ErrNotFound) {
				return nil, nil, err
			}
		}
		return nil, nil, classify(deploy.ErrNotFound, "no service of %s has a container; start the project first (%s up -d)", strings.Join(files, ", "), strings.Join(tool.Argv, " "))
	}
	list, err := eng.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelProject+"="+opts.ProjectName), filters.Arg("label", LabelOneoff+"=False"))})
	if err == nil {
		list, err = composeOwned(ctx, eng, list)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing compose containers: %w", err)
	}
	if len(list) == 0 {
		return nil, nil, classify(deploy.ErrNotFound, "no container of compose project %q on this host", opts.ProjectName)
	}
	p, err := Resolve(ctx, eng, opts, list[0].Labels[LabelService])
	if err != nil {
		return nil, nil, err
	}
	cfg, err := p.Config(ctx)
	return p, cfg, err
}

// Replicas lists a service's containers (not one-off ones), by number.
func (p *Project) Replicas(ctx context.Context, eng Engine, service string) ([]container.Summary, error) {
	list, err := eng.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelProject+"="+p.Name),
		filters.Arg("label", LabelService+"="+service),
		filters.Arg("label", LabelOneoff+"=False"))})
	if err == nil {
		list, err = composeOwned(ctx, eng, list)
	}
	if err != nil {
		return nil, fmt.Errorf("listing containers of %s/%s: %w", p.Name, service, err)
	}
	sort.Slice(list, func(i, j int) bool { return number(list[i].Labels) < number(list[j].Labels) })
	return list, nil
}

func number(labels map[string]string) int {
	n, err := strconv.Atoi(labels[LabelNumber])
	if err != nil {
		return 1 << 30
	}
	return n
}

func absFiles(files []string, dir string) ([]string, error) {
	var out []string
	for _, f := range files {
		if !filepath.IsAbs(f) && dir != "" {
			f = filepath.Join(dir, f)
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, classify(deploy.ErrInvalid, "compose file %s: %v", f, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, classify(deploy.ErrInvalid, "compose file %s: %v", f, errors.Unwrap(err))
		}
		out = append(out, abs)
	}
	return out, nil
}

// labelFiles reads the compose files a container was created from: v2
// writes absolute paths, v1 paths relative to the working directory.
func labelFiles(labels map[string]string) []string {
	var out []string
	for _, f := range strings.Split(labels[LabelConfigFiles], ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(labels[LabelWorkingDir], f)
		}
		out = append(out, filepath.Clean(f))
	}
	return out
}

func sameFiles(files []string, labels map[string]string) bool {
	have := labelFiles(labels)
	if len(have) == 0 {
		return false
	}
	// The first file names the project; overrides may differ.
	return have[0] == files[0]
}

func notFound(opts Options, files []string, service string, others []string) error {
	sort.Strings(others)
	switch {
	case opts.ProjectName != "" && len(others) > 0:
		return classify(deploy.ErrNotFound, "service %s has no container in project %q; it runs in project %s (use -p %s, or drop -p to go by the compose file)", service, opts.ProjectName, strings.Join(uniq(others), ", "), uniq(others)[0])
	case opts.ProjectName != "":
		return classify(deploy.ErrNotFound, "service %s has no container in project %q (is it up? docker compose -p %s ps)", service, opts.ProjectName, opts.ProjectName)
	case len(files) > 0:
		return classify(deploy.ErrNotFound, "service %s of %s has no container on this host; start it first (docker compose -f %s up -d %s)", service, strings.Join(files, ", "), files[0], service)
	}
	return classify(deploy.ErrInvalid, "name the compose project with -f FILE or -p PROJECT")
}

func uniq(list []string) []string {
	var out []string
	for i, s := range list {
		if i == 0 || s != list[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// ServiceProjects lists the compose projects that run service (containers
// compose owns, labelled with it), and whether one of them was made from
// files (the first names the project, as for Resolve). A deploy -f FILE
// SERVICE that could be a stack's asks it before taking the stack path.
func ServiceProjects(ctx context.Context, eng Engine, files []string, service string) (ofFiles bool, projects []string, err error) {
	list, err := eng.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelService+"="+service),
		filters.Arg("label", LabelOneoff+"=False"))})
	if err == nil {
		list, err = composeOwned(ctx, eng, list)
	}
	if err != nil {
		return false, nil, fmt.Errorf("listing compose containers of service %s: %w", service, err)
	}
	for _, c := range list {
		if len(files) > 0 && sameFiles(files, c.Labels) {
			ofFiles = true
		}
		projects = append(projects, c.Labels[LabelProject])
	}
	sort.Strings(projects)
	return ofFiles, uniq(projects), nil
}
