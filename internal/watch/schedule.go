// Package watch is baton watch: it asks registries, on a schedule, whether
// the tags that opted-in containers run have moved, and queues a deploy for
// each that has.
package watch

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser accepts standard 5-field cron, an optional leading seconds field,
// and descriptors such as @hourly and @every 10m.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a cron expression.
func ParseSchedule(spec string) (cron.Schedule, error) {
	if d, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every "); ok {
		// The library rounds a negative or sub-second period up to 1s.
		if every, err := time.ParseDuration(strings.TrimSpace(d)); err == nil && every < time.Second {
			return nil, fmt.Errorf("schedule %q: the period must be at least 1s", spec)
		}
	}
	s, err := parser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w (want a cron expression like \"*/5 * * * *\", \"0 30 3 * * *\" with seconds, or \"@every 10m\")", spec, err)
	}
	return s, nil
}

// Every is a fixed interval as a schedule.
func Every(d time.Duration) cron.Schedule { return interval(d) }

type interval time.Duration

func (i interval) Next(t time.Time) time.Time { return t.Add(time.Duration(i)) }

// discovery bounds how long a new container or a changed baton.schedule
// label goes unnoticed when the watcher's own schedule is sparse.
const discovery = time.Minute

// planner decides which containers are due for a check. Containers without
// a baton.schedule label follow the global schedule; each with one follows
// its own, from the time it was first seen.
type planner struct {
	global    cron.Schedule
	globalDue time.Time
	labels    map[string]*labelSchedule
}

type labelSchedule struct {
	spec  string
	sched cron.Schedule
	due   time.Time
	err   error
}

func newPlanner(global cron.Schedule, now time.Time, immediate bool) *planner {
	p := &planner{global: global, labels: map[string]*labelSchedule{}}
	p.globalDue = global.Next(now)
	if immediate {
		p.globalDue = now
	}
	return p
}

// round is one wake-up at now: it returns a function saying whether the
// container with key and schedule label spec ("" for none) is due, and a
// function to call once every container was asked, which advances the
// schedules and forgets containers no longer there.
func (p *planner) round(now time.Time) (due func(key, spec string) (bool, error), done func()) {
	globalFired := !now.Before(p.globalDue)
	seen := map[string]bool{}
	due = func(key, spec string) (bool, error) {
		seen[key] = true
		if spec == "" {
			delete(p.labels, key)
			return globalFired, nil
		}
		ls := p.labels[key]
		if ls == nil || ls.spec != spec {
			ls = &labelSchedule{spec: spec}
			ls.sched, ls.err = ParseSchedule(spec)
			if ls.err == nil {
				ls.due = ls.sched.Next(now)
			}
			p.labels[key] = ls
			return false, ls.err
		}
		if ls.err != nil {
			return false, ls.err
		}
		if now.Before(ls.due) {
			return false, nil
		}
		ls.due = ls.sched.Next(now)
		return true, nil
	}
	done = func() {
		if globalFired {
			p.globalDue = p.global.Next(now)
		}
		for k := range p.labels {
			if !seen[k] {
				delete(p.labels, k)
			}
		}
	}
	return due, done
}

// wake is when the next round should run.
func (p *planner) wake(now time.Time) time.Time {
	next := now.Add(discovery)
	if p.globalDue.Before(next) {
		next = p.globalDue
	}
	for _, ls := range p.labels {
		if ls.err == nil && ls.due.Before(next) {
			next = ls.due
		}
	}
	return next
}
