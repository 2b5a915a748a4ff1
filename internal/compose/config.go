package compose

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is the part of a rendered compose file (`config` output, which both
// tools print as YAML with interpolation and env_file applied) that baton
// reads.
type Config struct {
	Services map[string]ServiceConfig `yaml:"services"`
}

// ServiceConfig is one service as the compose tool rendered it.
type ServiceConfig struct {
	Image         string             `yaml:"image"`
	ContainerName string             `yaml:"container_name"`
	NetworkMode   string             `yaml:"network_mode"`
	Environment   map[string]*string `yaml:"environment"`
	Command       stringOrList       `yaml:"command"`
	Entrypoint    stringOrList       `yaml:"entrypoint"`
	Labels        labelMap           `yaml:"labels"`
	WorkingDir    string             `yaml:"working_dir"`
	User          string             `yaml:"user"`
	DependsOn     dependsOn          `yaml:"depends_on"`
}

// ParseConfig reads the `config` output of either compose tool.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("reading the rendered compose file: %w", err)
	}
	if c.Services == nil {
		c.Services = map[string]ServiceConfig{}
	}
	return &c, nil
}

// Names lists the services, sorted.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// EnvList is the service's environment as KEY=VALUE entries, sorted, without
// variables that are declared but unset (compose passes those only when the
// shell has them, and rendering already resolved that).
func (s ServiceConfig) EnvList() []string {
	var out []string
	for k, v := range s.Environment {
		if v != nil {
			out = append(out, k+"="+*v)
		}
	}
	sort.Strings(out)
	return out
}

// stringOrList is a command or entrypoint: a list, or a string compose splits
// the way a shell would (simple quoting only).
type stringOrList []string

func (s *stringOrList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*s = nil
			return nil
		}
		*s = shellSplit(n.Value)
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*s = l
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list", n.Line)
}

// labelMap accepts labels as a map or as a list of key=value.
type labelMap map[string]string

func (l *labelMap) UnmarshalYAML(n *yaml.Node) error {
	out := map[string]string{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]*string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			if v != nil {
				out[k] = *v
			} else {
				out[k] = ""
			}
		}
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		for _, kv := range list {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	default:
		return fmt.Errorf("line %d: labels: want a map or a list", n.Line)
	}
	*l = out
	return nil
}

// dependsOn accepts the list form and the map form (service: {condition}).
type dependsOn []string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*d = l
	case yaml.MappingNode:
		var out []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value)
		}
		sort.Strings(out)
		*d = out
	default:
		return fmt.Errorf("line %d: depends_on: want a list or a map", n.Line)
	}
	return nil
}

// shellSplit splits a command string on spaces, honouring single and double
// quotes, which is what compose files use in practice.
func shellSplit(s string) []string {
	var out []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote = r
			inWord = true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// Order sorts services so that each comes after those it depends on, ties
// by name. A dependency cycle is an error naming it.
func Order(c *Config) ([]string, error) {
	var out []string
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("depends_on cycle: %s -> %s", strings.Join(path, " -> "), name)
		}
		state[name] = 1
		deps := append([]string(nil), c.Services[name].DependsOn...)
		sort.Strings(deps)
		for _, d := range deps {
			if _, ok := c.Services[d]; !ok {
				continue // a profile-disabled or external service
			}
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, name)
		return nil
	}
	for _, n := range c.Names() {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
