package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/deploy"
)

func TestDecide(t *testing.T) {
	up := func(h string) HostFacts { return HostFacts{Host: h, Found: true, Image: "app:1"} }
	down := func(h string) HostFacts { return HostFacts{Host: h, Down: "connection refused"} }
	cases := []struct {
		name    string
		facts   []HostFacts
		policy  DownPolicy
		actions []Action
		errHas  string
		exit    int
	}{
		{"all up, in the order given", []HostFacts{up("c"), up("a"), up("b")}, DownFail, []Action{ActionDeploy, ActionDeploy, ActionDeploy}, "", 0},
		{"down fails before anything changes", []HostFacts{up("a"), down("b"), up("c")}, DownFail, nil, "host b: engine does not answer, so no host was changed", 1},
		{"down skipped", []HostFacts{up("a"), down("b"), up("c")}, DownSkip, []Action{ActionDeploy, ActionSkip, ActionDeploy}, "", 0},
		{"all down", []HostFacts{down("a"), down("b")}, DownSkip, nil, "no host of web answers", 1},
		{"missing container", []HostFacts{up("a"), {Host: "b"}}, DownFail, nil, "host b has no container web", 2},
		{"twice", []HostFacts{up("a"), up("a")}, DownFail, nil, "host a is given twice", 2},
		{"bad name", []HostFacts{up("../etc")}, DownFail, nil, `host name "../etc"`, 2},
		{"none", nil, DownFail, nil, "no hosts to deploy web on", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Decide("web", c.facts, c.policy)
			if c.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), c.errHas) {
					t.Fatalf("err = %v, want one containing %q", err, c.errHas)
				}
				if got := deploy.ExitCode(err); got != c.exit {
					t.Fatalf("exit code %d, want %d", got, c.exit)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []Action
			for i, s := range p.Steps {
				got = append(got, s.Action)
				if s.Host != c.facts[i].Host {
					t.Errorf("step %d is host %s, want %s (the order given)", i, s.Host, c.facts[i].Host)
				}
			}
			if !slices.Equal(got, c.actions) {
				t.Fatalf("actions %v, want %v", got, c.actions)
			}
		})
	}
}

func TestAfterHost(t *testing.T) {
	p := Plan{Service: "web", Steps: []Step{{Host: "a"}, {Host: "b"}, {Host: "c"}, {Host: "d"}}}
	cases := []struct {
		name     string
		done     []Status
		rollback bool
		cont     bool
		back     []string
	}{
		{"first deployed", []Status{StatusDeployed}, false, true, nil},
		{"up to date goes on", []Status{StatusUpToDate, StatusUpToDate}, true, true, nil},
		{"skipped goes on", []Status{StatusSkipped}, false, true, nil},
		{"failure stops", []Status{StatusDeployed, StatusFailed}, false, false, nil},
		{"failure rolls back what changed, newest first", []Status{StatusDeployed, StatusUpToDate, StatusDeployed, StatusFailed}, true, false, []string{"c", "a"}},
		{"first host failing has nothing to roll back", []Status{StatusFailed}, true, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := AfterHost(p, c.done, c.rollback)
			if d.Continue != c.cont || !slices.Equal(d.RollBack, c.back) {
				t.Fatalf("got %+v, want continue=%v rollback=%v", d, c.cont, c.back)
			}
		})
	}
}

func TestWorstExit(t *testing.T) {
	for _, c := range []struct {
		codes []int
		want  int
	}{{nil, 0}, {[]int{0, 0}, 0}, {[]int{0, 2}, 2}, {[]int{2, 1, 0}, 1}, {[]int{1, 3, 2}, 3}} {
		if got := WorstExit(c.codes...); got != c.want {
			t.Errorf("WorstExit(%v) = %d, want %d", c.codes, got, c.want)
		}
	}
}

func TestParseDownPolicy(t *testing.T) {
	if p, err := ParseDownPolicy("skip"); err != nil || p != DownSkip {
		t.Fatalf("skip: %v %v", p, err)
	}
	if _, err := ParseDownPolicy("ignore"); err == nil || deploy.ExitCode(err) != 2 {
		t.Fatalf("ignore: %v, want a usage error", err)
	}
	if !errors.Is(deploy.Classify(deploy.ErrInvalid, "x"), deploy.ErrInvalid) {
		t.Fatal("Classify")
	}
}
