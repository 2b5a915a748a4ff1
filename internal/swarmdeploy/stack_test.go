package swarmdeploy

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/cli/cli/compose/interpolation"
	"github.com/docker/docker/api/types/swarm"
	"go.yaml.in/yaml/v3"

	"github.com/baton-sh/baton/internal/deploy"
)

// rendered is what docker stack config prints for a two-service stack.
const rendered = `version: "3.8"
services:
  web:
    image: shop/web:1
    environment:
      MODE: prod
    configs:
      - source: site
        target: /etc/site
    networks:
      front: null
    stop_grace_period: 45s
    deploy:
      replicas: 2
      update_config:
        order: stop-first
  worker:
    image: shop/worker:1
    secrets:
      - token
networks:
  front:
    driver: overlay
configs:
  site:
    file: /srv/stack/site.conf
secrets:
  token:
    file: /srv/stack/token
`

type fakeLister []swarm.Service

func (l fakeLister) ServiceList(context.Context, swarm.ServiceListOptions) ([]swarm.Service, error) {
	return l, nil
}

func stackSvc(stack, name string) swarm.Service {
	return swarm.Service{Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: stack + "_" + name, Labels: map[string]string{StackNamespaceLabel: stack}}}}
}

func TestFindStackService(t *testing.T) {
	two := fakeLister{stackSvc("shop", "web"), stackSvc("shop", "worker"), stackSvc("blog", "web")}
	for _, tc := range []struct {
		list           fakeLister
		stack, service string
		name           string
		found          bool
		err            string
	}{
		{list: two, service: "worker", name: "shop_worker", found: true},
		{list: two, stack: "blog", service: "web", name: "blog_web", found: true},
		{list: two, service: "web", err: "several stacks (blog, shop): name one with -p"},
		{list: two, service: "db"},
		// A service named like a stack's but not labelled with it is not
		// the stack's.
		{list: fakeLister{{Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "shop_web"}}}}, service: "web"},
	} {
		name, _, found, err := FindStackService(t.Context(), tc.list, tc.stack, tc.service)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || deploy.ExitCode(err) != 2 {
				t.Errorf("%s/%s: %v, want exit 2 with %q", tc.stack, tc.service, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || found != tc.found {
			t.Errorf("%s/%s: %q found %v err %v, want %q found %v", tc.stack, tc.service, name, found, err, tc.name, tc.found)
		}
	}
}

func TestStackRender(t *testing.T) {
	st := &Stack{Name: "shop", Service: "web", Files: []string{"/srv/stack/stack.yml"}}
	f, err := parseStack([]byte(rendered), st)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := f.grace(); err != nil || *g != 45*time.Second || f.image() != "shop/web:1" {
		t.Fatalf("file's grace %v (%v), image %s", g, err, f.image())
	}
	grace := time.Minute
	spec := swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "shop/web:2", StopGracePeriod: &grace}},
		UpdateConfig: updateConfig(Options{}), RollbackConfig: updateConfig(Options{FailureAction: FailurePause})}
	out, err := f.render("web", spec)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Grace       string         `yaml:"stop_grace_period"`
			Environment map[string]any `yaml:"environment"`
			Deploy      struct {
				Replicas int               `yaml:"replicas"`
				Update   map[string]string `yaml:"update_config"`
				Rollback map[string]string `yaml:"rollback_config"`
			} `yaml:"deploy"`
		} `yaml:"services"`
		Networks map[string]any `yaml:"networks"`
		Configs  map[string]any `yaml:"configs"`
		Secrets  map[string]any `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	web, ok := doc.Services["web"]
	switch {
	case !ok || len(doc.Services) != 1:
		t.Fatalf("services %v: want web only (the others untouched)\n%s", doc.Services, out)
	case web.Image != "shop/web:2" || web.Grace != "1m0s" || web.Environment["MODE"] != "prod" || web.Deploy.Replicas != 2:
		t.Fatalf("web keeps the file's spec with the image and grace overridden: %+v", web)
	case web.Deploy.Update["order"] != "start-first" || web.Deploy.Update["failure_action"] != "rollback" || web.Deploy.Rollback["failure_action"] != "pause":
		t.Fatalf("update settings: %v, rollback %v", web.Deploy.Update, web.Deploy.Rollback)
	case doc.Networks["front"] == nil || doc.Configs["site"] == nil || doc.Secrets != nil:
		t.Fatalf("networks %v, configs %v, secrets %v: want the network, the service's config and no other stack object", doc.Networks, doc.Configs, doc.Secrets)
	}
	if _, err := parseStack([]byte(rendered), &Stack{Name: "shop", Service: "db"}); deploy.ExitCode(err) != 2 || !strings.Contains(err.Error(), "has no service db (it has web, worker)") {
		t.Fatalf("missing service: %v", err)
	}
}

// A stack deploy goes through docker stack deploy of the one service; the
// update it starts is followed like any other.
func TestDeployStackService(t *testing.T) {
	f := newFake()
	f.svc.Spec.Name = "shop_web"
	var calls [][]string
	var deployed []byte
	st := &Stack{Name: "shop", Service: "web", Files: []string{"/srv/stack/stack.yml"},
		Docker: func(_ context.Context, dir string, stdin []byte, args ...string) ([]byte, error) {
			calls = append(calls, args)
			if dir != "/srv/stack" {
				return nil, errors.New("run in " + dir)
			}
			if args[1] == "config" {
				return []byte(rendered), nil
			}
			deployed = stdin
			var doc struct {
				Services map[string]struct {
					Image string `yaml:"image"`
				} `yaml:"services"`
			}
			if err := yaml.Unmarshal(stdin, &doc); err != nil {
				return nil, err
			}
			spec := f.svc.Spec
			cs := *spec.TaskTemplate.ContainerSpec
			cs.Image = doc.Services["web"].Image
			spec.TaskTemplate.ContainerSpec = &cs
			_, err := f.ServiceUpdate(context.Background(), f.svc.ID, f.svc.Version, spec, swarm.ServiceUpdateOptions{})
			return nil, err
		}}
	res, err := deployer(f, false).Deploy(t.Context(), Options{Service: "shop_web", Image: "shop/web:2", Stack: st})
	if err != nil || res.Outcome != deploy.OutcomeDeployed || f.svc.Spec.TaskTemplate.ContainerSpec.Image != "shop/web:2" {
		t.Fatalf("stack deploy: %v, outcome %s, image %s", err, res.Outcome, f.svc.Spec.TaskTemplate.ContainerSpec.Image)
	}
	if len(calls) != 2 || strings.Join(calls[0], " ") != "stack config -c /srv/stack/stack.yml" ||
		strings.Join(calls[1], " ") != "stack deploy --compose-file - --resolve-image never --with-registry-auth --detach=true --quiet shop" {
		t.Fatalf("docker calls: %q", calls)
	}
	if strings.Contains(string(deployed), "worker") {
		t.Fatalf("the other service was deployed too:\n%s", deployed)
	}
	// Again: the file changes nothing, so no update starts.
	calls = nil
	res, err = deployer(f, false).Deploy(t.Context(), Options{Service: "shop_web", Image: "shop/web:2", Stack: st})
	if err != nil || res.Outcome != deploy.OutcomeUpToDate || len(calls) != 2 {
		t.Fatalf("same file again: %v, outcome %s, %d docker calls", err, res.Outcome, len(calls))
	}
	// Bad input changes nothing: probe flags (the file has the spec), a
	// service the file lacks.
	calls = nil
	if _, err := deployer(f, false).Deploy(t.Context(), Options{Service: "shop_web", Stack: st, Probe: Probe{HTTPPath: "/"}}); deploy.ExitCode(err) != 2 || len(calls) != 0 {
		t.Fatalf("probe flags for a stack service: %v, %d docker calls", err, len(calls))
	}
	bad := *st
	bad.Service = "db"
	if _, err := deployer(f, false).Deploy(t.Context(), Options{Service: "shop_web", Stack: &bad}); deploy.ExitCode(err) != 2 || len(calls) != 1 {
		t.Fatalf("a service the file lacks: %v, %d docker calls", err, len(calls))
	}
}

// The file docker stack config printed is interpolated already; docker
// stack deploy interpolates what baton gives it once more (from baton's
// environment). Every $ must reach the service as the first rendering left
// it: a literal $$HOME (now $HOME), a value that held a $ (p$ss, s3cr${t),
// a $$SECRET that must not become this process's SECRET.
func TestStackRenderKeepsDollars(t *testing.T) {
	const file = `services:
  web:
    image: shop/web:1
    command: ["sh", "-c", "echo $HOME a$b"]
    environment:
      DB_PASS: p$ss
      OTHER: s3cr${t
      KEY: $SECRET
    labels:
      - "x=$$y"
`
	t.Setenv("HOME", "/root")
	t.Setenv("SECRET", "leaked")
	t.Setenv("ss", "gone")
	f, err := parseStack([]byte(file), &Stack{Name: "shop", Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	spec := swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "shop/web:2"}},
		UpdateConfig: updateConfig(Options{}), RollbackConfig: updateConfig(Options{})}
	out, err := f.render("web", spec)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	// What docker stack deploy does with the file: interpolate it.
	got, err := interpolation.Interpolate(doc, interpolation.Options{LookupValue: os.LookupEnv})
	if err != nil {
		t.Fatalf("docker stack deploy would refuse the file: %v\n%s", err, out)
	}
	web := got["services"].(map[string]any)["web"].(map[string]any)
	env := web["environment"].(map[string]any)
	cmd := web["command"].([]any)
	labels := web["labels"].([]any)
	if env["DB_PASS"] != "p$ss" || env["OTHER"] != "s3cr${t" || env["KEY"] != "$SECRET" ||
		cmd[2] != "echo $HOME a$b" || labels[0] != "x=$$y" || web["image"] != "shop/web:2" {
		t.Fatalf("after a second interpolation: environment %v, command %q, labels %q, image %v\n%s", env, cmd, labels, web["image"], out)
	}
}
