package deploy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// composeWorkingDir is the label compose puts the project's directory in;
// relative config file paths are relative to it.
const composeWorkingDir = "com.docker.compose.project.working_dir"

// composeInjected names the compose configs and secrets of a container's
// service that compose copied into the container's filesystem when it
// created it: those whose source is content: or environment: (outside
// Swarm; a file: source is a bind mount, which a clone copies with the host
// configuration). baton creates the new container itself, from a copy of
// the old one's configuration, so it would not have them. The project's
// files are read as compose labelled the container (raw YAML: only the kind
// of each source matters, so no variable needs to be set). It returns
// nothing for a container compose did not make, and an error when the
// files cannot be read here (then nobody can tell).
func composeInjected(labels map[string]string) ([]string, error) {
	files := labels[composeConfigFiles]
	if files == "" || labels[composeLabelPrefix+"service"] == "" {
		return nil, nil
	}
	service := labels[composeLabelPrefix+"service"]
	type ref struct {
		kind, name, target string
	}
	var refs []ref
	sources := map[string]map[string]map[string]any{"config": {}, "secret": {}} // kind -> name -> definition
	for _, f := range strings.Split(files, ",") {
		if !filepath.IsAbs(f) {
			f = filepath.Join(labels[composeWorkingDir], f)
		}
		data, err := readComposeFile(f)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Services map[string]struct {
				Configs []yaml.Node `yaml:"configs"`
				Secrets []yaml.Node `yaml:"secrets"`
			} `yaml:"services"`
			Configs map[string]map[string]any `yaml:"configs"`
			Secrets map[string]map[string]any `yaml:"secrets"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			// yaml's errors can quote the document (a cannot-unmarshal
			// error holds the offending value), and the path came from a
			// label anyone who can run a container could have set: name
			// the file, never its bytes.
			return nil, fmt.Errorf("reading compose file %s: not a compose file (invalid YAML); check the container's %s label", f, composeConfigFiles)
		}
		for name, def := range doc.Configs {
			sources["config"][name] = def // a later file overrides, as compose merges
		}
		for name, def := range doc.Secrets {
			sources["secret"][name] = def
		}
		svc := doc.Services[service]
		for kind, nodes := range map[string][]yaml.Node{"config": svc.Configs, "secret": svc.Secrets} {
			for _, n := range nodes {
				var r ref
				r.kind = kind
				if n.Kind == yaml.ScalarNode {
					r.name = n.Value
				} else {
					var long struct {
						Source string `yaml:"source"`
						Target string `yaml:"target"`
					}
					if err := n.Decode(&long); err != nil {
						return nil, fmt.Errorf("reading compose file %s: service %s: a config or secret entry is neither a name nor a source/target mapping", f, service)
					}
					r.name, r.target = long.Source, long.Target
				}
				refs = append(refs, r)
			}
		}
	}
	var out []string
	for _, r := range refs {
		def := sources[r.kind][r.name]
		var from string
		switch {
		case def["content"] != nil:
			from = "content:"
		case def["environment"] != nil:
			from = "environment:"
		default:
			continue // a file: (bind mount) or external source
		}
		target := r.target
		switch {
		case target == "" && r.kind == "secret":
			target = "/run/secrets/" + r.name
		case target == "" && r.kind == "config":
			target = "/" + r.name
		case r.kind == "secret" && !strings.HasPrefix(target, "/"):
			target = "/run/secrets/" + target
		}
		d := fmt.Sprintf("%s %s (%s) at %s", r.kind, r.name, from, target)
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out, nil
}

// maxComposeFile bounds how much of a compose file is read: real ones are
// kilobytes, and the path is a label's, so it could name /dev/zero.
const maxComposeFile = 4 << 20

// readComposeFile reads one of the files a container's compose label names.
// The label is the container's, so the path may be anything on the host:
// only a regular file is read (a FIFO would block the deploy, a device
// never end), opened without blocking, and at most maxComposeFile bytes.
func readComposeFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading compose file %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading compose file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading compose file %s: not a regular file (%s); check the container's %s label", path, fi.Mode().Type(), composeConfigFiles)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxComposeFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading compose file %s: %w", path, err)
	}
	if len(data) > maxComposeFile {
		return nil, fmt.Errorf("reading compose file %s: larger than %d MiB, not a compose file; check the container's %s label", path, maxComposeFile>>20, composeConfigFiles)
	}
	return data, nil
}
