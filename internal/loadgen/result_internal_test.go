package loadgen

import (
	"testing"
	"time"
)

func TestPercentilesNearestRank(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var samples []Sample
	// 1ms..100ms, shuffled by a stride so order does not help.
	for i := range 100 {
		ms := (i*37)%100 + 1
		samples = append(samples, Sample{Start: t0.Add(time.Duration(i) * time.Second), Duration: time.Duration(ms) * time.Millisecond})
	}
	p := newResult(samples, t0, t0.Add(100*time.Second), "max requests").Overall()
	if p.P50 != 50*time.Millisecond || p.P99 != 99*time.Millisecond || p.Max != 100*time.Millisecond || p.Count != 100 {
		t.Fatalf("percentiles %+v", p)
	}
	one := percentiles([]Sample{{Duration: 7 * time.Millisecond}})
	if one.P50 != 7*time.Millisecond || one.P99 != 7*time.Millisecond || one.Count != 1 {
		t.Fatalf("one sample: %+v", one)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Fatalf("no samples: %+v", percentiles(nil))
	}
}

func TestWindowsSplitByOverlap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(startMs, durMs int) Sample {
		return Sample{Start: t0.Add(time.Duration(startMs) * time.Millisecond), Duration: time.Duration(durMs) * time.Millisecond}
	}
	samples := []Sample{
		at(0, 10),    // before the first window
		at(95, 10),   // starts before the window, ends inside: inside
		at(150, 1),   // inside
		at(199, 50),  // starts inside, ends after: inside
		at(250, 10),  // between windows
		at(500, 100), // spans the whole second window: inside
		at(900, 1),   // after
	}
	w := []Window{
		{Start: t0.Add(100 * time.Millisecond), End: t0.Add(200 * time.Millisecond)},
		{Start: t0.Add(520 * time.Millisecond), End: t0.Add(530 * time.Millisecond)},
	}
	r := newResult(samples, t0, t0.Add(time.Second), "duration")
	in, out := r.Latency(w)
	if in.Count != 4 || out.Count != 3 {
		t.Fatalf("inside %d outside %d, want 4 and 3", in.Count, out.Count)
	}
	if in.Max != 100*time.Millisecond || out.Max != 10*time.Millisecond {
		t.Fatalf("inside max %v outside max %v", in.Max, out.Max)
	}
	in, out = r.Latency(nil)
	if in.Count != 0 || out.Count != len(samples) {
		t.Fatalf("no windows: inside %d outside %d", in.Count, out.Count)
	}
}

func TestSummaryFormat(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newResult([]Sample{
		{Start: t0, Duration: 1200 * time.Microsecond, Version: "v1"},
		{Start: t0, Duration: 30 * time.Millisecond, Version: "v2"},
		{Start: t0, Duration: 8100 * time.Microsecond, Version: "v2"},
		{Start: t0, Duration: 2 * time.Second, Err: "status 502: bad gateway", Status: 502},
	}, t0, t0, "stopped")
	want := "failed 1/4, p50 8.1ms p99 2.00s max 2.00s, versions v1=1 v2=2"
	if got := r.Summary(); got != want {
		t.Fatalf("Summary\n got %q\nwant %q", got, want)
	}
}
