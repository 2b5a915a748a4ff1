package traffic

import (
	"testing"

	"github.com/baton-sh/baton/internal/relay"
)

// TestDescribeRelay: baton status names each target's failed dials and
// resets once it has any, and stays short while it has none.
func TestDescribeRelay(t *testing.T) {
	target := func(name string, active int, dials, resets uint64) *relay.TargetStatus {
		return &relay.TargetStatus{Target: relay.Target{Name: name, Addrs: []string{name + ":8080"}}, Active: active, Total: 10, DialErrors: dials, Resets: resets}
	}
	cases := []struct {
		name string
		st   relay.Status
		want string
	}{
		{name: "no target", st: relay.Status{}, want: "relay r has no target"},
		{name: "clean", st: relay.Status{Current: target("new", 2, 0, 0)}, want: "relay r -> new:8080 (2 open)"},
		{name: "resets", st: relay.Status{Current: target("new", 2, 0, 7)}, want: "relay r -> new:8080 (2 open, 0 dial errors, 7 resets)"},
		{name: "draining with resets", st: relay.Status{Current: target("old", 1, 0, 0), Draining: []relay.TargetStatus{*target("new", 0, 1, 4)}},
			want: "relay r -> old:8080 (1 open); draining new (0 open, 1 dial errors, 4 resets)"},
		{name: "split", st: relay.Status{Current: target("old", 1, 0, 0), Canary: target("new", 1, 2, 3), CanaryPercent: 20},
			want: "relay r split: 80% -> old:8080 (10 served, 1 open, 0 dial errors, 0 resets), 20% canary -> new:8080 (10 served, 1 open, 2 dial errors, 3 resets)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := describeRelay("r", tc.st); got != tc.want {
				t.Fatalf("describeRelay = %q\nwant            %q", got, tc.want)
			}
		})
	}
}
