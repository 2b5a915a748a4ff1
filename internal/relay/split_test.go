package relay

import (
	"testing"
)

// TestCanaryTurnShare: every run of 100 connections sends exactly percent
// of them to the canary, spread out rather than in a burst.
func TestCanaryTurnShare(t *testing.T) {
	for _, tc := range []struct {
		percent  int
		n        uint64
		want     int
		maxBurst int // longest run of consecutive canary turns
	}{
		{percent: 1, n: 100, want: 1, maxBurst: 1},
		{percent: 20, n: 100, want: 20, maxBurst: 1},
		{percent: 20, n: 1000, want: 200, maxBurst: 1},
		{percent: 50, n: 10, want: 5, maxBurst: 1},
		{percent: 90, n: 100, want: 90, maxBurst: 10},
		{percent: 99, n: 200, want: 198, maxBurst: 99},
		{percent: 0, n: 100, want: 0, maxBurst: 0},
	} {
		got, burst, run := 0, 0, 0
		for i := range tc.n {
			if canaryTurn(i, tc.percent) {
				got++
				run++
				burst = max(burst, run)
			} else {
				run = 0
			}
		}
		if got != tc.want || burst > tc.maxBurst {
			t.Errorf("percent %d over %d connections: %d to the canary (want %d), longest run %d (want <= %d)", tc.percent, tc.n, got, tc.want, burst, tc.maxBurst)
		}
	}
}

// TestSplitSendsShareAndPromotes: a 20% split sends 20 of 100 new
// connections to the canary, the rest to the current target; status shows
// the split with the counts; a set of the canary promotes it with its
// counts, and a set of the current target aborts the split, the canary
// draining. A split needs a current target and refuses the current one as
// canary and a percent over 99.
func TestSplitSendsShareAndPromotes(t *testing.T) {
	a := startHTTPBackend(t, "a")
	b := startHTTPBackend(t, "b")
	r := startRelay(t, Config{})
	if _, err := r.ctl.Split(t.Context(), Target{Name: "b", Addrs: []string{b.addr}}, 20); err == nil {
		t.Fatal("split without a current target was accepted")
	}
	r.set(t, "a", a.addr)
	if _, err := r.ctl.Split(t.Context(), Target{Name: "a", Addrs: []string{a.addr}}, 20); err == nil {
		t.Fatal("split with the current target as canary was accepted")
	}
	if _, err := r.ctl.Split(t.Context(), Target{Name: "b", Addrs: []string{b.addr}}, 100); err == nil {
		t.Fatal("split of 100% was accepted (that is a set)")
	}
	st, err := r.ctl.Split(t.Context(), Target{Name: "b", Addrs: []string{b.addr}}, 20)
	if err != nil {
		t.Fatal(err)
	}
	if st.Canary == nil || st.Canary.Name != "b" || st.CanaryPercent != 20 || st.Current.Name != "a" {
		t.Fatalf("status after split: %+v", st)
	}
	c := newHTTPClient()
	counts := map[string]int{}
	for range 100 {
		body, err := get(t.Context(), c, r.url("/"))
		if err != nil {
			t.Fatal(err)
		}
		counts[body]++
	}
	if counts["a"] != 80 || counts["b"] != 20 {
		t.Fatalf("served %v, want a:80 b:20", counts)
	}
	st = r.status(t)
	if st.Canary == nil || st.Canary.Total != 20 || st.Current.Total != 80 {
		t.Fatalf("status counts: current %+v canary %+v", st.Current, st.Canary)
	}

	// Abort: the current target stays, the canary drains.
	st = r.set(t, "a", a.addr)
	if st.Canary != nil || st.Current.Name != "a" || len(st.Draining) != 1 || st.Draining[0].Name != "b" {
		t.Fatalf("status after abort: %+v", st)
	}
	for range 10 {
		if body, err := get(t.Context(), c, r.url("/")); err != nil || body != "a" {
			t.Fatalf("after abort: %q %v", body, err)
		}
	}

	// Split again, then promote: b keeps its counts and a drains.
	if _, err := r.ctl.Split(t.Context(), Target{Name: "b", Addrs: []string{b.addr}}, 50); err != nil {
		t.Fatal(err)
	}
	st = r.set(t, "b", b.addr)
	if st.Canary != nil || st.Current.Name != "b" || st.Current.Total != 20 || len(st.Draining) != 1 || st.Draining[0].Name != "a" {
		t.Fatalf("status after promote: %+v", st)
	}
	for range 10 {
		if body, err := get(t.Context(), c, r.url("/")); err != nil || body != "b" {
			t.Fatalf("after promote: %q %v", body, err)
		}
	}
}

// TestSplitFallsBackAndCountsDialErrors: a canary that refuses connections
// costs no request (its turns fall back to the current target) and its dial
// errors are counted, which is what a bake or canary watches.
func TestSplitFallsBackAndCountsDialErrors(t *testing.T) {
	a := startHTTPBackend(t, "a")
	r := startRelay(t, Config{})
	r.set(t, "a", a.addr)
	dead := closedAddr(t)
	if _, err := r.ctl.Split(t.Context(), Target{Name: "dead", Addrs: []string{dead}}, 50); err != nil {
		t.Fatal(err)
	}
	c := newHTTPClient()
	for range 20 {
		if body, err := get(t.Context(), c, r.url("/")); err != nil || body != "a" {
			t.Fatalf("got %q %v, want a", body, err)
		}
	}
	st := r.status(t)
	if st.Canary == nil || st.Canary.DialErrors != 10 || st.Canary.Total != 0 || st.Current.Total != 20 {
		t.Fatalf("status: current %+v canary %+v; want 10 dial errors on the canary and 20 served by a", st.Current, st.Canary)
	}
}
