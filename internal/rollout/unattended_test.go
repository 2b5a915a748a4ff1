package rollout

import (
	"context"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/deploy"
)

// upToDateEngines finds every host already on the image.
type upToDateEngines struct{ fakeEngines }

func (f *upToDateEngines) Deploy(_ context.Context, h Host, req deploy.Request) (*deploy.Result, error) {
	f.calls = append(f.calls, "deploy "+h.Name)
	return &deploy.Result{Outcome: deploy.OutcomeUpToDate, NewImage: "app:2"}, nil
}

// TestDeployFunc: a watch or webhook request runs one rollout across every
// host, one at a time and under the rollout lock, and is summed up as one
// result: deployed, up to date, or failed (stopping at the failed host).
func TestDeployFunc(t *testing.T) {
	type tc struct {
		name    string
		eng     Engines
		calls   func() []string
		outcome deploy.Outcome
		exit    int
		errHas  string
	}
	ok := &fakeEngines{}
	bad := &fakeEngines{failDeploy: "b"}
	same := &upToDateEngines{}
	cases := []tc{
		{"every host deployed", ok, func() []string { return ok.calls }, deploy.OutcomeDeployed, 0, ""},
		{"stops at the failed host", bad, func() []string { return bad.calls }, deploy.OutcomeFailed, 1, "host b"},
		{"nothing to change", same, func() []string { return same.calls }, deploy.OutcomeUpToDate, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			locks := 0
			x := &Executor{Hosts: hosts("a", "b", "c"), Engines: c.eng, Lock: func(context.Context, string) (func(), error) {
				locks++
				return func() {}, nil
			}}
			run := x.DeployFunc(Options{Down: DownFail})
			res, err := run(context.Background(), deploy.Request{Target: "web", Image: "app:2", Trigger: "watch", Who: "watch@h"})
			if res == nil || res.Outcome != c.outcome || res.ExitCode != c.exit || res.Target != "web" || res.Trigger != "watch" || res.Who != "watch@h" {
				t.Fatalf("result %+v, want outcome %s exit %d", res, c.outcome, c.exit)
			}
			if (err != nil) != (c.errHas != "") || (err != nil && !strings.Contains(err.Error(), c.errHas)) {
				t.Errorf("error %v, want one naming %q", err, c.errHas)
			}
			if c.outcome == deploy.OutcomeFailed && !strings.Contains(res.Error, "host b") {
				t.Errorf("result error %q does not name the failed host", res.Error)
			}
			if len(res.Notes) != 1 || !strings.HasPrefix(res.Notes[0], "deploy of web") {
				t.Errorf("notes %v, want the rollout's summary", res.Notes)
			}
			want := "deploy a,deploy b,deploy c"
			if c.outcome == deploy.OutcomeFailed {
				want = "deploy a,deploy b"
			}
			if got := strings.Join(c.calls(), ","); got != want || locks != 1 {
				t.Errorf("calls %s with %d rollout locks, want %s under one", got, locks, want)
			}
		})
	}
}
