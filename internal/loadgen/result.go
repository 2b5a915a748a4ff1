package loadgen

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Sample is one request.
type Sample struct {
	Client   int           // which client sent it
	Start    time.Time     // when it was sent
	Duration time.Duration // until the body was read or the request failed
	Method   string        // GET or POST
	Status   int           // HTTP status, 0 when no response came
	Err      string        // why it failed; "" when it succeeded
	Version  string        // the X-Version response header
	Reused   bool          // sent on a kept-alive connection
}

// OK reports whether the request succeeded: a response with a 2xx status,
// read to the end.
func (s Sample) OK() bool { return s.Err == "" }

// End returns when the request finished.
func (s Sample) End() time.Time { return s.Start.Add(s.Duration) }

// Window is a span of time, such as the moment a deploy swapped containers.
type Window struct {
	Start, End time.Time
}

// overlaps reports whether the sample was in progress during the window.
func (w Window) overlaps(s Sample) bool {
	return !s.End().Before(w.Start) && !s.Start.After(w.End)
}

// Percentiles summarise request latencies (nearest-rank).
type Percentiles struct {
	P50, P99, Max time.Duration
	Count         int
}

func (p Percentiles) String() string {
	return fmt.Sprintf("p50 %s p99 %s max %s", fmtDuration(p.P50), fmtDuration(p.P99), fmtDuration(p.Max))
}

// Result is every request a load made, ordered by start time.
type Result struct {
	Start, End time.Time // of the load
	Reason     string    // why it stopped: duration, max requests, stopped, canceled: …
	samples    []Sample
}

func newResult(samples []Sample, start, end time.Time, reason string) *Result {
	slices.SortStableFunc(samples, func(a, b Sample) int { return a.Start.Compare(b.Start) })
	return &Result{Start: start, End: end, Reason: reason, samples: samples}
}

// Samples returns every request, ordered by start time. Do not modify it.
func (r *Result) Samples() []Sample { return r.samples }

// Total returns how many requests were sent.
func (r *Result) Total() int { return len(r.samples) }

// Failed returns how many requests failed.
func (r *Result) Failed() int {
	n := 0
	for _, s := range r.samples {
		if !s.OK() {
			n++
		}
	}
	return n
}

// Failures returns the failed requests, each with its Err.
func (r *Result) Failures() []Sample {
	var f []Sample
	for _, s := range r.samples {
		if !s.OK() {
			f = append(f, s)
		}
	}
	return f
}

// Versions counts successful requests by X-Version ("" when absent).
func (r *Result) Versions() map[string]int {
	v := map[string]int{}
	for _, s := range r.samples {
		if s.OK() {
			v[s.Version]++
		}
	}
	return v
}

// Overall returns the latency of all requests.
func (r *Result) Overall() Percentiles { return percentiles(r.samples) }

// Latency splits requests into those in progress at any time during
// one of the windows and the rest, and summarises each. Failed requests
// count too: a swap that makes requests time out should show.
func (r *Result) Latency(windows []Window) (inside, outside Percentiles) {
	var in, out []Sample
	for _, s := range r.samples {
		if slices.ContainsFunc(windows, func(w Window) bool { return w.overlaps(s) }) {
			in = append(in, s)
		} else {
			out = append(out, s)
		}
	}
	return percentiles(in), percentiles(out)
}

func percentiles(samples []Sample) Percentiles {
	d := make([]time.Duration, len(samples))
	for i, s := range samples {
		d[i] = s.Duration
	}
	return PercentilesOf(d)
}

// PercentilesOf summarises durations, such as those of several loads
// together. It sorts d.
func PercentilesOf(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	n := len(d)
	// Nearest rank: the smallest value with at least pct% of the values at or
	// below it, i.e. the ceil(pct*n/100)th; integer maths, no float rounding.
	rank := func(pct int) time.Duration { return d[(pct*n+99)/100-1] }
	return Percentiles{P50: rank(50), P99: rank(99), Max: d[n-1], Count: n}
}

// Summary is one line for logs, such as
// "failed 0/12345, p50 1.2ms p99 8.1ms max 30ms, versions v1=6000 v2=6345".
func (r *Result) Summary() string {
	vs := r.Versions()
	parts := make([]string, 0, len(vs))
	for _, v := range slices.Sorted(maps.Keys(vs)) {
		name := v
		if name == "" {
			name = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, vs[v]))
	}
	return fmt.Sprintf("failed %d/%d, %s, versions %s", r.Failed(), r.Total(), r.Overall(), strings.Join(parts, " "))
}

func fmtDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case ms >= 10:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.1fms", ms)
	}
}
