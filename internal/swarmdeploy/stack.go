package swarmdeploy

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"go.yaml.in/yaml/v3"

	"github.com/baton-sh/baton/internal/deploy"
)

// StackNamespaceLabel is the label docker stack deploy puts on every service
// of a stack; its value is the stack's name.
const StackNamespaceLabel = "com.docker.stack.namespace"

// Stack is one service of a `docker stack deploy` stack, deployed from the
// stack's file(s) the way stack deploy would: baton has the docker CLI render
// the file (docker stack config: merges, interpolation, paths), overrides
// the service's image and update settings, and has the CLI deploy that one
// service into the stack (docker stack deploy, no --prune), so its spec
// comes from the file, the stack keeps owning it, and the stack's other
// services are not touched. baton then follows the update as for any
// service.
type Stack struct {
	Name    string   // the stack (its namespace)
	Service string   // the service's name in the file
	Files   []string // -c/-f, in order
	// Docker runs the docker CLI with args in dir, stdin as its input, and
	// returns its stdout; its error carries the CLI's own message.
	Docker func(ctx context.Context, dir string, stdin []byte, args ...string) ([]byte, error)
}

// ServiceLister lists services; FindStackService needs it.
type ServiceLister interface {
	ServiceList(ctx context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error)
}

// FindStackService finds the Swarm service a stack file's service runs as
// (<stack>_<service>, labelled with the stack): in stack when given, else
// in whichever stack has it. found is false when none has it (or the engine
// is no swarm manager); a service in several stacks needs the stack named.
func FindStackService(ctx context.Context, eng ServiceLister, stack, service string) (name, ns string, found bool, err error) {
	label := StackNamespaceLabel
	if stack != "" {
		label += "=" + stack
	}
	list, err := eng.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		if isNotManager(err) {
			return "", "", false, nil
		}
		return "", "", false, fmt.Errorf("stack service %s: listing services: %w", service, err)
	}
	var stacks []string
	for _, s := range list {
		n := s.Spec.Labels[StackNamespaceLabel]
		if (stack == "" || n == stack) && s.Spec.Name == n+"_"+service {
			name, ns = s.Spec.Name, n
			stacks = append(stacks, n)
		}
	}
	switch len(stacks) {
	case 0:
		return "", "", false, nil
	case 1:
		return name, ns, true, nil
	}
	sort.Strings(stacks)
	return "", "", false, kinded(deploy.ErrInvalid, "service %s is in several stacks (%s): name one with -p STACK", service, strings.Join(stacks, ", "))
}

// stackFile is the rendered stack file, reduced to what deploying one of
// its services needs.
type stackFile struct {
	doc     map[string]any
	service map[string]any
}

// loadStack renders the stack's files with the docker CLI and picks the
// service.
func loadStack(ctx context.Context, st *Stack) (*stackFile, error) {
	args := []string{"stack", "config"}
	for _, f := range st.Files {
		args = append(args, "-c", f)
	}
	out, err := st.Docker(ctx, stackDir(st.Files), nil, args...)
	if err != nil {
		return nil, kinded(deploy.ErrInvalid, "stack %s: %w", st.Name, err)
	}
	return parseStack(out, st)
}

func parseStack(out []byte, st *Stack) (*stackFile, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		return nil, kinded(deploy.ErrInvalid, "stack %s: reading the rendered file: %w", st.Name, err)
	}
	services, _ := doc["services"].(map[string]any)
	svc, ok := services[st.Service].(map[string]any)
	if !ok {
		names := make([]string, 0, len(services))
		for n := range services {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, kinded(deploy.ErrNotFound, "stack file %s has no service %s (it has %s)", strings.Join(st.Files, ", "), st.Service, strings.Join(names, ", "))
	}
	return &stackFile{doc: doc, service: svc}, nil
}

func stackDir(files []string) string {
	if len(files) == 0 || files[0] == "-" {
		return ""
	}
	return filepath.Dir(files[0])
}

// image is the image the file names for the service.
func (f *stackFile) image() string {
	s, _ := f.service["image"].(string)
	return s
}

// grace is the file's stop grace period (nil: Swarm's default).
func (f *stackFile) grace() (*time.Duration, error) {
	v, ok := f.service["stop_grace_period"]
	if !ok || v == nil {
		return nil, nil
	}
	d, err := time.ParseDuration(fmt.Sprint(v))
	if err != nil {
		return nil, kinded(deploy.ErrInvalid, "stop_grace_period %v: %w", v, err)
	}
	return &d, nil
}

// render returns the file deploying only the service, with the image and
// baton's update settings from spec (the plan's result), and only the
// configs and secrets the service uses (stack deploy would try to update
// every one it is given). Networks and volumes stay: stack deploy creates
// those missing and leaves existing ones.
func (f *stackFile) render(name string, spec swarm.ServiceSpec) ([]byte, error) {
	svc := f.service
	cs := spec.TaskTemplate.ContainerSpec
	svc["image"] = cs.Image
	if cs.StopGracePeriod != nil {
		svc["stop_grace_period"] = cs.StopGracePeriod.String()
	}
	dep, _ := svc["deploy"].(map[string]any)
	if dep == nil {
		dep = map[string]any{}
	}
	dep["update_config"] = composeUpdate(spec.UpdateConfig)
	dep["rollback_config"] = composeUpdate(spec.RollbackConfig)
	svc["deploy"] = dep
	out := map[string]any{"services": map[string]any{name: svc}}
	for _, k := range []string{"version", "networks", "volumes"} {
		if v, ok := f.doc[k]; ok {
			out[k] = v
		}
	}
	for _, k := range []string{"configs", "secrets"} {
		all, _ := f.doc[k].(map[string]any)
		used := map[string]any{}
		refs, _ := svc[k].([]any)
		for _, r := range refs {
			src := ""
			switch r := r.(type) {
			case string:
				src = r
			case map[string]any:
				src, _ = r["source"].(string)
			}
			if v, ok := all[src]; ok {
				used[src] = v
			}
		}
		if len(used) > 0 {
			out[k] = used
		}
	}
	// docker stack config interpolated the file already ($$ is now $, a
	// variable its value); docker stack deploy interpolates what it is
	// given again, from baton's environment: escape every $ so the values
	// reach the service as the first rendering made them.
	b, err := yaml.Marshal(escapeDollars(out))
	if err != nil {
		return nil, fmt.Errorf("stack service %s: writing the file: %w", name, err)
	}
	return b, nil
}

// escapeDollars returns v with every $ in its string values written $$,
// which compose interpolation reads back as one $. Keys are never
// interpolated and stay as they are.
func escapeDollars(v any) any {
	switch v := v.(type) {
	case string:
		return strings.ReplaceAll(v, "$", "$$")
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = escapeDollars(e)
		}
		return out
	case map[any]any:
		out := make(map[any]any, len(v))
		for k, e := range v {
			out[k] = escapeDollars(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = escapeDollars(e)
		}
		return out
	}
	return v
}

func composeUpdate(u *swarm.UpdateConfig) map[string]any {
	return map[string]any{
		"parallelism":       u.Parallelism,
		"delay":             u.Delay.String(),
		"failure_action":    u.FailureAction,
		"monitor":           u.Monitor.String(),
		"max_failure_ratio": u.MaxFailureRatio,
		"order":             u.Order,
	}
}

// deployStack is the stack's counterpart of the service update: stack
// deploy of the one service, then the update followed to its end. A file
// that changes nothing in the task template starts no update: up to date.
func (d *Deployer) deployStack(ctx context.Context, svc swarm.Service, spec swarm.ServiceSpec, f *stackFile, ref, cur string, o Options, res *deploy.Result) error {
	st := o.Stack
	body, err := f.render(st.Service, spec)
	if err != nil {
		return err
	}
	d.event(deploy.PhaseCreate, fmt.Sprintf("deploying service %s of stack %s from %s with %s (start-first, parallelism %d, failure action %s)",
		st.Service, st.Name, strings.Join(st.Files, ", "), ref, spec.UpdateConfig.Parallelism, spec.UpdateConfig.FailureAction), false)
	// The image is resolved already (pinned, or this node's copy):
	// --resolve-image never keeps stack deploy from resolving it again.
	if _, err := st.Docker(ctx, stackDir(st.Files), body, "stack", "deploy", "--compose-file", "-", "--resolve-image", "never", "--with-registry-auth", "--detach=true", "--quiet", st.Name); err != nil {
		return &deploy.PhaseError{Phase: deploy.PhaseCreate, OldServing: true,
			Err: fmt.Errorf("stack %s: deploying service %s: %w; it keeps serving %s", st.Name, st.Service, err, cur)}
	}
	after, _, err := d.Engine.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		return &deploy.PhaseError{Phase: deploy.PhaseHealthy, OldServing: true, Err: fmt.Errorf("service %s: inspect: %w", o.Service, err)}
	}
	if sameTasks(svc.Spec.TaskTemplate, after.Spec.TaskTemplate) {
		res.Outcome = deploy.OutcomeUpToDate
		d.event(deploy.PhaseFinalize, fmt.Sprintf("service %s already runs %s as its stack file says", o.Service, ref), false)
		return nil
	}
	return d.watch(ctx, after, ref, cur, o, res)
}

// sameTasks reports whether two task templates would run the same tasks
// (Swarm starts no update then).
func sameTasks(a, b swarm.TaskSpec) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}
