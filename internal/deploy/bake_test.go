package deploy

import (
	"strings"
	"testing"
)

// TestBakeVerdict is the rule a bake and a canary apply to what they see
// of the new container: events, a reading of its state, the relay's count
// of failed dials and of resets, and the probe's failures in a row.
func TestBakeVerdict(t *testing.T) {
	healthy := bakeSignal{Running: true, Health: "healthy"}
	cases := []struct {
		name string
		sig  bakeSignal
		lim  bakeLimits
		want string // part of the reason; "" = keep baking
	}{
		{name: "healthy reading", sig: healthy},
		{name: "no healthcheck, running", sig: bakeSignal{Running: true}},
		{name: "starting health is not a failure", sig: bakeSignal{Running: true, Health: "starting"}},
		{name: "unhealthy reading", sig: bakeSignal{Running: true, Health: "unhealthy"}, want: "is unhealthy"},
		{name: "not running", sig: bakeSignal{}, want: "is not running"},
		{name: "restarting", sig: bakeSignal{Running: true, Restarting: true}, want: "is restarting"},
		{name: "health event unhealthy", sig: bakeSignal{Event: "health_status: unhealthy"}, want: "turned unhealthy"},
		{name: "health event healthy", sig: bakeSignal{Event: "health_status: healthy"}},
		{name: "health event without space", sig: bakeSignal{Event: "health_status:unhealthy"}, want: "turned unhealthy"},
		{name: "die", sig: bakeSignal{Event: "die"}, want: "exited"},
		{name: "oom", sig: bakeSignal{Event: "oom"}, want: "memory"},
		{name: "restart", sig: bakeSignal{Event: "restart"}, want: "restarted"},
		{name: "destroy", sig: bakeSignal{Event: "destroy"}, want: "removed"},
		{name: "an unrelated event", sig: bakeSignal{Event: "exec_start: sh"}},
		{name: "dial errors at the threshold", sig: bakeSignal{Running: true, DialErrors: 5}, lim: bakeLimits{DialErrors: 5}},
		{name: "dial errors over the threshold", sig: bakeSignal{Running: true, DialErrors: 6}, lim: bakeLimits{DialErrors: 5}, want: "fail 6 dials"},
		{name: "dial errors without a threshold", sig: bakeSignal{Running: true, DialErrors: 1000}},
		{name: "resets at the threshold", sig: bakeSignal{Running: true, Resets: 3}, lim: bakeLimits{Resets: 3}},
		{name: "resets over the threshold", sig: bakeSignal{Running: true, Resets: 4}, lim: bakeLimits{Resets: 3}, want: "reset 4 connections"},
		{name: "resets without a threshold", sig: bakeSignal{Running: true, Resets: 1000}},
		{name: "resets do not count against the dial limit", sig: bakeSignal{Running: true, Resets: 1000}, lim: bakeLimits{DialErrors: 5}},
		{name: "dial errors do not count against the reset limit", sig: bakeSignal{Running: true, DialErrors: 1000}, lim: bakeLimits{Resets: 5}},
		{name: "both limits, resets over", sig: bakeSignal{Running: true, DialErrors: 2, Resets: 6}, lim: bakeLimits{DialErrors: 5, Resets: 5}, want: "--bake-max-resets 5"},
		{name: "an exit outranks the counts", sig: bakeSignal{Resets: 6}, lim: bakeLimits{Resets: 5}, want: "is not running"},
		{name: "two probe failures", sig: bakeSignal{Running: true, ProbeFails: 2}},
		{name: "three probe failures", sig: bakeSignal{Running: true, ProbeFails: 3}, want: "3 times in a row"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := bakeVerdict(tc.sig, tc.lim)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("bakeVerdict(%+v, %+v) = %q, want %q", tc.sig, tc.lim, got, tc.want)
			}
		})
	}
}
