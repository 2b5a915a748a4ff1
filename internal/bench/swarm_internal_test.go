package bench

import (
	"strings"
	"testing"
	"time"
)

// TestSwarmReportString: one row per side with failed/total and the deploy
// times, a side that stopped early keeps its row and says why, and a side
// with no finished update shows no times rather than zeros.
func TestSwarmReportString(t *testing.T) {
	r := &SwarmReport{Engine: "Docker 2.0.0", Nodes: 1, Replicas: 2, Valid: "1s", Baton: "baton deploy SERVICE --image X", Deploys: 3, Clients: 8, Rate: 25, Sides: []SwarmSide{
		{Side: SwarmSidePlain, Total: 4000, Failed: 2, Reasons: []ReasonCount{{Reason: "GET status 502: 502 Bad Gateway", Count: 2}}, Times: []time.Duration{10 * time.Second, 12 * time.Second, 11 * time.Second}},
		{Side: SwarmSideBaton, Total: 100, Failed: 0, Error: "update 1: exit status 1"},
	}}
	out := r.String()
	for _, want := range []string{
		"1 node(s), a dnsrr service of 2 replicas behind nginx resolving tasks.<service> (valid=1s)",
		"3 updates per side under 8 keep-alive clients (25 req/s each",
		SwarmSidePlain + "  2/4000        11s         12s\n",
		SwarmSideBaton + strings.Repeat(" ", len(SwarmSidePlain)-len(SwarmSideBaton)) + "  0/100         -           -\n",
		"baton deploy: update 1: exit status 1",
		SwarmSidePlain + ": 2 × GET status 502: 502 Bad Gateway\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestSwarmBatonFlags: baton's side waits between tasks past nginx's cache
// only when nginx keeps the tasks longer than a second.
func TestSwarmBatonFlags(t *testing.T) {
	for _, c := range []struct {
		valid time.Duration
		want  string
	}{{time.Second, ""}, {10 * time.Second, "--update-delay 12s"}} {
		if got := strings.Join(swarmBatonFlags(SwarmConfig{ResolverValid: c.valid}), " "); got != c.want {
			t.Errorf("valid=%s: flags %q, want %q", c.valid, got, c.want)
		}
	}
}
