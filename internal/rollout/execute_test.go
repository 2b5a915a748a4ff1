package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/deploy"
)

// fakeEngines records the calls a rollout makes; failDeploy names the host
// whose deploy fails (with the old container still serving).
type fakeEngines struct {
	down       map[string]bool
	failDeploy string
	calls      []string
}

func (f *fakeEngines) Facts(_ context.Context, h Host, target string) HostFacts {
	if f.down[h.Name] {
		return HostFacts{Host: h.Name, Down: "dial unix: connection refused"}
	}
	return HostFacts{Host: h.Name, Found: true, Image: "app:1"}
}

func (f *fakeEngines) Deploy(_ context.Context, h Host, req deploy.Request) (*deploy.Result, error) {
	f.calls = append(f.calls, "deploy "+h.Name)
	if h.Name == f.failDeploy {
		return &deploy.Result{Outcome: deploy.OutcomeFailed, OldServing: true}, errors.New("new container never got healthy")
	}
	return &deploy.Result{Outcome: deploy.OutcomeDeployed}, nil
}

func (f *fakeEngines) Rollback(_ context.Context, h Host, req deploy.Request) (*deploy.Result, error) {
	f.calls = append(f.calls, "rollback "+h.Name)
	return &deploy.Result{Outcome: deploy.OutcomeDeployed}, nil
}

func hosts(names ...string) []Host {
	out := make([]Host, len(names))
	for i, n := range names {
		out[i] = Host{Name: n}
	}
	return out
}

func statuses(res *Result) string {
	var b []string
	for _, h := range res.Hosts {
		b = append(b, h.Host+"="+string(h.Status))
	}
	return strings.Join(b, " ")
}

func TestExecutor(t *testing.T) {
	cases := []struct {
		name     string
		eng      *fakeEngines
		opts     Options
		calls    string
		statuses string
		exit     int
	}{
		{"all deployed in order", &fakeEngines{}, Options{Kind: KindDeploy, Down: DownFail},
			"deploy a,deploy b,deploy c", "a=deployed b=deployed c=deployed", 0},
		{"stops at the failed host", &fakeEngines{failDeploy: "b"}, Options{Kind: KindDeploy, Down: DownFail},
			"deploy a,deploy b", "a=deployed b=failed c=not-run", 1},
		{"rollback on failure", &fakeEngines{failDeploy: "b"}, Options{Kind: KindDeploy, Down: DownFail, RollbackOnFailure: true},
			"deploy a,deploy b,rollback a", "a=rolled-back b=failed c=not-run", 1},
		{"down host refuses all", &fakeEngines{down: map[string]bool{"c": true}}, Options{Kind: KindDeploy, Down: DownFail},
			"", "a=not-run b=not-run c=not-run", 1},
		{"down host skipped", &fakeEngines{down: map[string]bool{"b": true}}, Options{Kind: KindDeploy, Down: DownSkip},
			"deploy a,deploy c", "a=deployed b=skipped c=deployed", 0},
		{"dry run plans every host even past a failure", &fakeEngines{failDeploy: "a"}, Options{Kind: KindDeploy, Down: DownFail, Request: deploy.Request{DryRun: true}},
			"deploy a,deploy b,deploy c", "a=failed b=planned c=planned", 1},
		{"rollback kind walks hosts with rollback", &fakeEngines{}, Options{Kind: KindRollback, Down: DownFail},
			"rollback a,rollback b,rollback c", "a=deployed b=deployed c=deployed", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			locked := 0
			x := &Executor{Hosts: hosts("a", "b", "c"), Engines: c.eng, Lock: func(context.Context, string) (func(), error) {
				locked++
				return func() { locked-- }, nil
			}}
			c.opts.Request.Target = "web"
			res, err := x.Run(t.Context(), c.opts)
			if got := strings.Join(c.eng.calls, ","); got != c.calls {
				t.Errorf("calls %q, want %q", got, c.calls)
			}
			if got := statuses(res); got != c.statuses {
				t.Errorf("statuses %q, want %q", got, c.statuses)
			}
			if res.ExitCode != c.exit || ExitCode(err) != c.exit {
				t.Errorf("exit %d (err %v), want %d", res.ExitCode, err, c.exit)
			}
			if (err == nil) != (c.exit == 0) {
				t.Errorf("err = %v with exit %d", err, c.exit)
			}
			if locked != 0 {
				t.Errorf("rollout lock still held")
			}
		})
	}
}

func TestSummarySaysWhereTheRolloutStopped(t *testing.T) {
	x := &Executor{Hosts: hosts("a", "b", "c"), Engines: &fakeEngines{failDeploy: "b"}}
	res, _ := x.Run(t.Context(), Options{Kind: KindDeploy, Down: DownFail, Request: deploy.Request{Target: "web"}})
	want := "deploy of web stopped at host b: host a on the new image; host b failed; host c untouched, on the old image"
	if res.Summary != want {
		t.Fatalf("summary %q\nwant    %q", res.Summary, want)
	}
}
