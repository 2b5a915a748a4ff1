package swarmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/testenv"
)

// stackYML is a two-service stack; RELEASE lets a test change the file.
const stackYML = `version: "3.8"
services:
  web:
    image: @IMAGE@
    environment:
      RELEASE: "@RELEASE@"
      LITERAL: "a$$b $$HOME"
      PASS: "${H11_STACK_PASS}"
    networks: [front]
    deploy:
      replicas: 2
      endpoint_mode: dnsrr
  worker:
    image: @IMAGE@
    networks: [front]
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
networks:
  front:
    driver: overlay
    attachable: true
`

func writeStack(t *testing.T, path, image, release string) {
	t.Helper()
	body := strings.NewReplacer("@IMAGE@", image, "@RELEASE@", release).Replace(stackYML)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSwarmStackDeploy proves baton deploy -f stack.yml SERVICE: a stack
// made by docker stack deploy, one of its services deployed by baton from
// the (changed) file under load through nginx: the service runs the new
// image and the file's new environment, keeps its stack label, docker stack
// services still lists it, the other service is untouched, and no request
// fails.
func TestSwarmStackDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Docker engine of its own (skipped with -short)")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	v1, v2 := demo(t, cli, "v1", nil), demo(t, cli, "v2", nil)
	// A value with $ in the environment the file reads: docker stack
	// config interpolates it once; baton must keep it from being read again.
	t.Setenv("H11_STACK_PASS", "p$ss")
	stack := testenv.UniqueName("h11stk")
	dir := t.TempDir()
	file := filepath.Join(dir, "stack.yml")
	writeStack(t, file, v1, "1")
	docker(t, "stack", "deploy", "-c", file, "--resolve-image", "never", "--detach=true", stack)
	t.Cleanup(func() {
		_ = exec.Command("docker", "stack", "rm", stack).Run()
		// The stack's network goes once its tasks' containers are gone.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			tasks, _ := cli.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace="+stack))})
			if len(tasks) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	web, worker := stack+"_web", stack+"_worker"
	s := &setup{cli: cli, name: web, baton: testenv.BuildBinary(t, "./cmd/baton"), state: t.TempDir(), network: stack + "_front"}
	svc, _, err := cli.ServiceInspectWithRaw(t.Context(), web, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.svcID = svc.ID
	s.waitRunning(t, v1, 2)
	s.nginx = testenv.ContainerNginx(t, cli, testenv.NginxOpts{
		Network: s.network,
		Location: `location / {
            resolver 127.0.0.11 valid=1s ipv6=off;
            set $tasks tasks.` + web + `;
            proxy_pass http://$tasks:8080;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 1s;
        }`,
	})
	testenv.WaitHTTP(t, s.nginx.URL()+"/", time.Minute)
	workerBefore, _, err := cli.ServiceInspectWithRaw(t.Context(), worker, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}

	l := s.load(t)
	writeStack(t, file, v1, "2")
	start := time.Now()
	r := s.run(t, "deploy", "-f", file, "web", "--image", v2, "--update-monitor", "2s")
	if r.code != 0 {
		t.Fatalf("stack deploy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("baton deploy -f stack.yml web took %s:\n%s%s", time.Since(start).Round(100*time.Millisecond), r.stderr, r.stdout)
	after := s.service(t)
	cs := after.Spec.TaskTemplate.ContainerSpec
	switch {
	case !strings.HasPrefix(cs.Image, v2):
		t.Fatalf("service %s runs %s, want %s", web, cs.Image, v2)
	case !slices.Contains(cs.Env, "RELEASE=2"):
		t.Fatalf("service %s's environment %v: want the file's RELEASE=2", web, cs.Env)
	case !slices.Contains(cs.Env, "LITERAL=a$b $HOME") || !slices.Contains(cs.Env, "PASS=p$ss"):
		t.Fatalf("service %s's environment %v: want LITERAL=a$b $HOME ($$ in the file) and PASS=p$ss (from the environment)", web, cs.Env)
	case after.Spec.Labels["com.docker.stack.namespace"] != stack:
		t.Fatalf("service %s lost its stack label: %v", web, after.Spec.Labels)
	case after.Spec.UpdateConfig == nil || after.Spec.UpdateConfig.Order != swarm.UpdateOrderStartFirst:
		t.Fatalf("service %s's update config %+v: want start-first", web, after.Spec.UpdateConfig)
	}
	s.waitRunning(t, v2, 2)
	if out := docker(t, "stack", "services", "--format", "{{.Name}}", stack); !strings.Contains(out, web) || !strings.Contains(out, worker) {
		t.Fatalf("docker stack services %s after the deploy:\n%s", stack, out)
	}
	if w, _, err := cli.ServiceInspectWithRaw(t.Context(), worker, swarm.ServiceInspectOptions{}); err != nil || w.Version != workerBefore.Version {
		t.Fatalf("the other service changed: %v, version %d -> %d", err, workerBefore.Version.Index, w.Version.Index)
	}

	// The same file and image again: nothing to do.
	if r := s.run(t, "deploy", "-f", file, "web", "--image", v2); r.code != 0 || !strings.Contains(r.stdout, "up to date") {
		t.Fatalf("same stack file again: exit %d, want 0 and up to date\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Bad input, nothing changed: a service the file lacks.
	v := s.service(t).Version
	if r := s.run(t, "deploy", "-f", file, "nope", "--swarm", "--image", v2); r.code != 2 {
		t.Fatalf("a service no stack has: exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}
	if now := s.service(t).Version; now != v {
		t.Fatalf("a refused deploy changed the service: version %d -> %d", v.Index, now.Index)
	}

	res := l.Stop()
	t.Logf("stack deploy under load: %d of %d requests failed", res.Failed(), res.Total())
	testenv.CheckLoad(t, res)
}
