package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/healthcheck"
)

// The early HEALTHCHECK run is the container's own check, exec'd in the
// container: its exit code decides (0 passes, anything else fails), and a
// container whose check Docker runs sooner than baton would gets none.
func TestImageHealthcheck(t *testing.T) {
	f := newFakeEngine()
	f.addImage("web:v1", "v1", "healthy")
	id := f.runOld("web", "web:v1", "", "shop")
	hc, ok := healthcheck.DockerHealthcheck(&container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD-SHELL", "wget -q -O- localhost:8080/healthz"}}})
	if !ok {
		t.Fatal("no healthcheck read")
	}
	p := imageHealthcheck{eng: f, id: id, hc: hc}
	f.execResult = dockerctl.ExecResult{ExitCode: 1}
	if err := p.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "exited 1") {
		t.Fatalf("a failing check: %v, want its exit code", err)
	}
	f.execResult = dockerctl.ExecResult{}
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("a passing check (the control): %v", err)
	}
	calls := f.calls()
	if len(calls) != 2 || calls[1] != "exec web /bin/sh -c wget -q -O- localhost:8080/healthz" {
		t.Fatalf("execs %q, want the check's own command in the container, twice", calls)
	}

	for _, tc := range []struct {
		interval time.Duration
		early    bool
		remote   bool
		only     bool // --docker-health-only
	}{{0, true, false, false}, {2 * time.Second, true, false, false}, {earlyHealthInterval, false, false, false}, {100 * time.Millisecond, false, false, false},
		{2 * time.Second, true, true, false}, {remoteEarlyHealthInterval, false, true, false}, {0, false, false, true}} {
		r := &run{d: &Deployer{Engine: f, Remote: tc.remote}, plan: &Plan{settings: Settings{DockerHealthOnly: tc.only}}, res: &Result{}}
		c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: id}, Config: &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/app", "-probe"}, Interval: tc.interval}}}
		spec, how := r.healthSpec(c, Endpoint{})
		if got := spec.EarlyCheck != nil; got != tc.early || got != strings.Contains(how, "run by baton") {
			t.Errorf("interval %s (remote %v, docker-health-only %v): early run %v (%q), want %v", tc.interval, tc.remote, tc.only, got, how, tc.early)
		}
	}
}
