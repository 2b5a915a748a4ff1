package watch

import (
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for spec, want := range map[string]time.Time{
		"*/5 * * * *":   t0.Add(5 * time.Minute),
		"*/2 * * * * *": t0.Add(2 * time.Second),
		"0 30 3 * * *":  time.Date(2026, 3, 2, 3, 30, 0, 0, time.UTC),
		"@hourly":       t0.Add(time.Hour),
		"@every 90s":    t0.Add(90 * time.Second),
	} {
		s, err := ParseSchedule(spec)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		if got := s.Next(t0); !got.Equal(want) {
			t.Errorf("%q: next after %s is %s, want %s", spec, t0, got, want)
		}
	}
	for _, bad := range []string{"", "every 5m", "* * *", "61 * * * *", "@every -1s"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// The planner: containers without a label follow the global schedule
// (from the start with an interval), each label its own from when it was
// first seen; a bad label is reported and never due; wake-ups come at the
// earliest due time, and at least every discovery period.
func TestPlanner(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	p := newPlanner(Every(10*time.Second), t0, true)
	if w := p.wake(t0); !w.Equal(t0) {
		t.Fatalf("an interval watcher first wakes at %s, want at once", w)
	}
	due, done := p.round(t0)
	if ok, _ := due("plain", ""); !ok {
		t.Fatal("unlabelled container not due at start")
	}
	if ok, err := due("fast", "@every 3s"); ok || err != nil {
		t.Fatalf("labelled container due on first sight: %v %v", ok, err)
	}
	if ok, err := due("bad", "every day"); ok || err == nil {
		t.Fatalf("bad label: %v %v", ok, err)
	}
	done()
	if w := p.wake(t0); !w.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("wake %s, want the labelled container's first time", w)
	}

	t3 := t0.Add(3 * time.Second)
	due, done = p.round(t3)
	if ok, _ := due("plain", ""); ok {
		t.Fatal("unlabelled container due before its interval")
	}
	if ok, _ := due("fast", "@every 3s"); !ok {
		t.Fatal("labelled container not due at its time")
	}
	if ok, err := due("bad", "every day"); ok || err == nil {
		t.Fatal("bad label became due")
	}
	done()
	if w := p.wake(t3); !w.Equal(t0.Add(6 * time.Second)) {
		t.Fatalf("wake %s", w)
	}

	t10 := t0.Add(10 * time.Second)
	due, done = p.round(t10)
	if ok, _ := due("plain", ""); !ok {
		t.Fatal("unlabelled container not due after its interval")
	}
	// "fast" is gone; a changed label starts afresh.
	if ok, _ := due("bad", "@every 1s"); ok {
		t.Fatal("a changed label is due at once")
	}
	done()
	if _, ok := p.labels["fast"]; ok {
		t.Fatal("a container no longer there is still planned")
	}
	if w := p.wake(t10); !w.Equal(t10.Add(time.Second)) {
		t.Fatalf("wake %s", w)
	}

	// A sparse cron schedule still wakes for discovery.
	q := newPlanner(mustParse(t, "0 4 * * *"), t0, false)
	if w := q.wake(t0); !w.Equal(t0.Add(discovery)) {
		t.Fatalf("cron watcher wakes %s, want after the discovery period", w)
	}
	due, done = q.round(t0.Add(discovery))
	if ok, _ := due("plain", ""); ok {
		t.Fatal("cron watcher checked before its time")
	}
	done()
}

func mustParse(t *testing.T, spec string) interface{ Next(time.Time) time.Time } {
	t.Helper()
	s, err := ParseSchedule(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
