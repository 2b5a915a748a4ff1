package swarmtest

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/baton-sh/baton/internal/loadgen"
	"github.com/baton-sh/baton/internal/testenv"
)

// setup is one dnsrr service of two replicas on an attachable overlay
// network, and an nginx container on that network resolving tasks.<service>
// through Docker's DNS, re-resolving every second.
type setup struct {
	cli     *client.Client
	name    string
	svcID   string
	nginx   *testenv.Nginx
	baton   string
	state   string
	network string
}

func newSetup(t *testing.T, image string, valid time.Duration) *setup {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a Docker engine of its own (skipped with -short)")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	s := &setup{cli: cli, name: testenv.UniqueName("h11-web-"), baton: testenv.BuildBinary(t, "./cmd/baton"), state: t.TempDir()}
	ctx := t.Context()
	s.network = s.name + "-net"
	if _, err := cli.NetworkCreate(ctx, s.network, network.CreateOptions{Driver: "overlay", Attachable: true, Labels: map[string]string{testenv.Label: "1"}}); err != nil {
		t.Fatalf("overlay network %s: %v", s.network, err)
	}
	t.Cleanup(func() {
		if err := cli.NetworkRemove(context.WithoutCancel(ctx), s.network); err != nil {
			t.Logf("network %s: %v", s.network, err)
		}
	})
	replicas := uint64(2)
	resp, err := cli.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: s.name, Labels: map[string]string{testenv.Label: "1"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: image, Labels: map[string]string{testenv.Label: "1"}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.network}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatalf("service %s: create: %v", s.name, err)
	}
	s.svcID = resp.ID
	t.Cleanup(func() {
		if err := cli.ServiceRemove(context.WithoutCancel(ctx), s.svcID); err != nil {
			t.Logf("service %s: remove: %v", s.name, err)
		}
		// The network goes once the tasks' containers are gone.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			tasks, _ := cli.TaskList(context.WithoutCancel(ctx), swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", s.name))})
			if len(tasks) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	s.nginx = testenv.ContainerNginx(t, cli, testenv.NginxOpts{
		Network: s.network,
		Location: `location / {
            resolver 127.0.0.11 valid=` + valid.String() + ` ipv6=off;
            set $tasks tasks.` + s.name + `;
            proxy_pass http://$tasks:8080;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 1s;
        }`,
	})
	s.waitRunning(t, image, int(replicas))
	testenv.WaitHTTP(t, s.nginx.URL()+"/", time.Minute)
	return s
}

// waitRunning waits until n tasks run image.
func (s *setup) waitRunning(t *testing.T, image string, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		running := 0
		tasks, err := s.cli.TaskList(t.Context(), swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", s.svcID), filters.Arg("desired-state", "running"))})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range tasks {
			if tk.Status.State == swarm.TaskStateRunning && strings.HasPrefix(tk.Spec.ContainerSpec.Image, image) {
				running++
			}
		}
		if running == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s: %d of %d tasks run %s after 2 minutes", s.name, running, n, image)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *setup) service(t *testing.T) swarm.Service {
	t.Helper()
	svc, _, err := s.cli.ServiceInspectWithRaw(t.Context(), s.svcID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (s *setup) image(t *testing.T) string {
	return s.service(t).Spec.TaskTemplate.ContainerSpec.Image
}

type batonRun struct {
	code           int
	stdout, stderr string
}

func (s *setup) command(args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.Command(s.baton, append([]string{"--state-dir", s.state}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = os.Environ()
	return cmd, &out, &errb
}

func (s *setup) run(t *testing.T, args ...string) batonRun {
	t.Helper()
	cmd, out, errb := s.command(args...)
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("baton %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return batonRun{code: code, stdout: out.String(), stderr: errb.String()}
}

func (s *setup) load(t *testing.T) *loadgen.Load {
	t.Helper()
	l, err := loadgen.Start(t.Context(), loadgen.Config{URL: s.nginx.URL() + "/", Clients: 8, Rate: 25, Duration: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

func demo(t *testing.T, cli *client.Client, version string, env map[string]string) string {
	ref, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: version, Env: env, HealthCheck: true, HealthStartPeriod: 3 * time.Second})
	return ref
}

// plainUpdate is what a Swarm user runs without baton: docker service update
// --image X --update-order start-first, Swarm's defaults otherwise.
func (s *setup) plainUpdate(t *testing.T, image string) {
	t.Helper()
	svc := s.service(t)
	spec := svc.Spec
	spec.TaskTemplate.ContainerSpec.Image = image
	spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStartFirst, FailureAction: swarm.UpdateFailureActionPause, Monitor: 5 * time.Second}
	if _, err := s.cli.ServiceUpdate(t.Context(), svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	after := s.service(t)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		cur := s.service(t)
		if us := cur.UpdateStatus; us != nil && us.StartedAt != nil && !us.StartedAt.Before(after.UpdatedAt.Add(-time.Second)) && us.State == swarm.UpdateStateCompleted {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("service %s: plain update to %s did not complete", s.name, image)
}

// TestSwarmServiceDeploys measures Swarm's own start-first update under
// load through nginx, then proves baton's service deploys: 10 deploys with
// no failed request, a never-healthy image rolled back with the old tasks
// serving, a missing image refused before anything changed, and a baton
// killed mid-update converging on the next run.
func TestSwarmServiceDeploys(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Docker engine of its own (skipped with -short)")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	imgs := []string{demo(t, cli, "v1", nil), demo(t, cli, "v2", nil), demo(t, cli, "v3", nil)}
	s := newSetup(t, imgs[0], time.Second)

	t.Run("routing mesh without IPVS is refused", func(t *testing.T) {
		// A service publishing through the ingress mesh, with no task (the
		// check comes before anything runs).
		zero := uint64(0)
		name := testenv.UniqueName("h11-mesh-")
		resp, err := cli.ServiceCreate(t.Context(), swarm.ServiceSpec{
			Annotations:  swarm.Annotations{Name: name, Labels: map[string]string{testenv.Label: "1"}},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: imgs[0]}},
			Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &zero}},
			EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress}}},
		}, swarm.ServiceCreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cli.ServiceRemove(context.WithoutCancel(t.Context()), resp.ID) })
		r := s.run(t, "deploy", name, "--image", imgs[1])
		_, statErr := os.Stat("/proc/net/ip_vs")
		switch {
		case statErr != nil && (r.code != 2 || !strings.Contains(r.stderr, "IPVS") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1):
			t.Fatalf("mesh service on a kernel without IPVS: exit %d, want 2 and one line naming IPVS\n%s", r.code, r.stderr)
		case statErr == nil && r.code != 0:
			t.Fatalf("mesh service on a kernel with IPVS: exit %d\n%s", r.code, r.stderr)
		}
		t.Logf("mesh service: exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	})

	t.Run("swarm's own start-first update (baseline)", func(t *testing.T) {
		l := s.load(t)
		for i := 1; i <= 3; i++ {
			s.plainUpdate(t, imgs[i%3])
		}
		res := l.Stop()
		t.Logf("plain docker service update --update-order start-first, 3 updates: %d of %d requests failed", res.Failed(), res.Total())
		for _, f := range res.Failures() {
			t.Logf("  failed: %s %s", f.Start.Format("15:04:05.000"), f.Err)
			break
		}
	})

	l := s.load(t)
	t.Run("10 deploys", func(t *testing.T) {
		for i := 1; i <= 10; i++ {
			want := imgs[(i+3)%3]
			if strings.HasPrefix(s.image(t), want) {
				want = imgs[(i+4)%3]
			}
			r := s.run(t, "deploy", s.name, "--image", want, "--update-monitor", "2s")
			if r.code != 0 {
				t.Fatalf("deploy %d to %s: exit %d\n%s%s", i, want, r.code, r.stdout, r.stderr)
			}
			if got := s.image(t); got != want {
				t.Fatalf("deploy %d: service runs %s, want %s", i, got, want)
			}
			if i == 1 {
				t.Logf("first deploy's output:\n%s%s", r.stderr, r.stdout)
			}
		}
	})
	before := s.image(t)

	t.Run("never healthy rolls back", func(t *testing.T) {
		bad := demo(t, cli, "bad", map[string]string{"MODE": "never-healthy"})
		r := s.run(t, "deploy", s.name, "--image", bad)
		if r.code != 1 {
			t.Fatalf("never-healthy deploy: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "keeps serving") {
			t.Errorf("never-healthy deploy does not say what keeps serving:\n%s", r.stderr)
		}
		if got := s.image(t); got != before {
			t.Fatalf("after the rollback the service runs %s, want %s", got, before)
		}
		s.waitRunning(t, before, 2)
	})

	t.Run("missing image fails cleanly", func(t *testing.T) {
		v := s.service(t).Version
		r := s.run(t, "deploy", s.name, "--image", "baton-test/no-such-image:"+testenv.UniqueName(""))
		if r.code != 1 || !strings.Contains(r.stderr, "not on this node") {
			t.Fatalf("missing image: exit %d, want 1 naming the image\n%s%s", r.code, r.stdout, r.stderr)
		}
		if now := s.service(t).Version; now != v {
			t.Fatalf("missing image changed the service (version %d -> %d)", v.Index, now.Index)
		}
		// Positive control: the same command with an image that exists works.
		other := imgs[0]
		if strings.HasPrefix(before, other) {
			other = imgs[1]
		}
		if r := s.run(t, "deploy", s.name, "--image", other); r.code != 0 {
			t.Fatalf("deploy to %s: exit %d\n%s", other, r.code, r.stderr)
		}
	})

	t.Run("SIGKILL mid-update converges", func(t *testing.T) {
		cur := s.image(t)
		want := imgs[2]
		if strings.HasPrefix(cur, want) {
			want = imgs[1]
		}
		cmd, _, errb := s.command("deploy", s.name, "--image", want)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(errb.String(), "updating service") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		// Let Swarm start the update, then kill baton in the middle of it.
		for time.Now().Before(deadline) {
			if us := s.service(t).UpdateStatus; us != nil && us.State == swarm.UpdateStateUpdating {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		st := s.service(t).UpdateStatus
		if st == nil || st.State != swarm.UpdateStateUpdating {
			t.Fatalf("baton was not killed mid-update (update status %+v)", st)
		}
		r := s.run(t, "deploy", s.name, "--image", want)
		if r.code != 0 {
			t.Fatalf("deploy after SIGKILL: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "earlier update") {
			t.Errorf("the next run did not say it converged an interrupted update:\n%s", r.stderr)
		}
		if got := s.image(t); got != want {
			t.Fatalf("after the next run the service runs %s, want %s", got, want)
		}
		s.waitRunning(t, want, 2)
	})
	t.Run("dry run, status, rollback, history", func(t *testing.T) {
		svc := s.service(t)
		cur := svc.Spec.TaskTemplate.ContainerSpec.Image
		prev := svc.PreviousSpec.TaskTemplate.ContainerSpec.Image
		other := imgs[0]
		if strings.HasPrefix(cur, other) {
			other = imgs[1]
		}
		r := s.run(t, "deploy", "--dry-run", s.name, "--image", other)
		if r.code != 0 || !strings.Contains(r.stdout, "image: "+cur+" -> "+other) {
			t.Fatalf("dry run: exit %d, want the image change in\n%s%s", r.code, r.stdout, r.stderr)
		}
		if v := s.service(t).Version; v != svc.Version {
			t.Fatalf("dry run changed the service (version %d -> %d)", svc.Version.Index, v.Index)
		}
		r = s.run(t, "status", s.name)
		if r.code != 0 || !strings.Contains(r.stdout, "2/2 running") || !strings.Contains(r.stdout, cur) {
			t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = s.run(t, "rollback", s.name)
		if r.code != 0 {
			t.Fatalf("rollback: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if got := s.image(t); got != prev {
			t.Fatalf("after rollback the service runs %s, want %s", got, prev)
		}
		s.waitRunning(t, prev, 2)
		r = s.run(t, "history")
		if r.code != 0 || strings.Count(r.stdout, s.name) < 12 {
			t.Fatalf("history: exit %d, want every deploy of %s\n%s%s", r.code, s.name, r.stdout, r.stderr)
		}
	})

	res := l.Stop()
	t.Logf("baton: 10 deploys + never-healthy + missing image + SIGKILL mid-update + rollback: %d of %d requests failed (%v)", res.Failed(), res.Total(), res.Versions())
	if res.Total() < 1000 || res.Failed() != 0 {
		for i, f := range res.Failures() {
			if i == 5 {
				break
			}
			t.Logf("  failed: %s %s", f.Start.Format("15:04:05.000"), f.Err)
		}
		t.Fatalf("baton's service deploys: %d of %d requests failed, want 0 of at least 1000", res.Failed(), res.Total())
	}
}

// TestSwarmNginxCachingTasks measures the path where nginx keeps the tasks'
// addresses for 10 s (resolver valid=10s): Swarm's own start-first update
// can replace every task inside that time, leaving nginx only stopped
// addresses; baton's --update-delay longer than nginx's cache leaves a live
// one in every answer nginx holds, which it retries on (proxy_next_upstream).
func TestSwarmNginxCachingTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Docker engine of its own (skipped with -short)")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	imgs := []string{demo(t, cli, "v1", nil), demo(t, cli, "v2", nil), demo(t, cli, "v3", nil)}
	s := newSetup(t, imgs[0], 10*time.Second)

	l := s.load(t)
	for i := 1; i <= 2; i++ {
		s.plainUpdate(t, imgs[i])
	}
	plain := l.Stop()
	t.Logf("nginx caching tasks 10 s, plain start-first update, 2 updates: %d of %d requests failed", plain.Failed(), plain.Total())

	l = s.load(t)
	for i, img := range []string{imgs[0], imgs[1]} {
		if r := s.run(t, "deploy", s.name, "--image", img, "--update-delay", "12s"); r.code != 0 {
			t.Fatalf("deploy %d: exit %d\n%s%s", i+1, r.code, r.stdout, r.stderr)
		}
	}
	withDelay := l.Stop()
	t.Logf("nginx caching tasks 10 s, baton deploy --update-delay 12s, 2 deploys: %d of %d requests failed", withDelay.Failed(), withDelay.Total())
	// What the delay removes: a moment when every address nginx holds is a
	// stopped task, which fails GETs too (nginx has no live server to
	// retry on). What it cannot remove: a POST nginx has already sent on a
	// connection a stopping task's listener then resets (nginx retries no
	// POST once sent), at most about one per old task stopped (2 deploys x
	// 2 replicas); see the README. Failures of any other kind, or more of
	// them, fail the test.
	const oldTasksStopped = 4
	var other []loadgen.Sample
	for _, f := range withDelay.Failures() {
		if f.Method != http.MethodPost || f.Status != http.StatusBadGateway {
			other = append(other, f)
		}
	}
	if len(other) > 0 || withDelay.Failed() > oldTasksStopped || withDelay.Total() < 1000 {
		for i, f := range withDelay.Failures() {
			if i == 5 {
				break
			}
			t.Logf("  failed: %s %s %d %s", f.Start.Format("15:04:05.000"), f.Method, f.Status, f.Err)
		}
		t.Fatalf("baton with --update-delay beyond nginx's cache: %d of %d requests failed (%d not a POST reset at a task's stop), want at most %d POST 502s of at least 1000", withDelay.Failed(), withDelay.Total(), len(other), oldTasksStopped)
	}
}
