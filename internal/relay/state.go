package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrUnknownTarget is returned when a request names a target that is
// neither current nor draining.
var ErrUnknownTarget = errors.New("unknown target")

// ErrNotDraining is returned by wait-drained and forget when the name is the
// current target's and no draining target has it.
var ErrNotDraining = errors.New("target is current, not draining")

// backend is one target with its counters. The same backend value is kept
// when a target goes from current to draining and back, so its counts stay
// those of the one container.
type backend struct {
	target    Target
	active    int
	total     uint64
	since     time.Time
	forgotten bool
	dialErrs  uint64
	resets    uint64
	// openAtDrain is active at the moment the target stopped taking new
	// connections: what a drain report calls "open when traffic moved",
	// even if the app closed some (say on a drain signal) before the
	// wait began.
	openAtDrain int
	// idle is closed while active is zero and replaced by an open channel
	// when active leaves zero, so wait-drained wakes on the event itself.
	idle chan struct{}
}

func newBackend(t Target, since time.Time) *backend {
	idle := make(chan struct{})
	close(idle)
	return &backend{target: t, since: since, idle: idle}
}

func (b *backend) status() TargetStatus {
	return TargetStatus{
		Target:     b.target.clone(),
		Active:     b.active,
		Total:      b.total,
		Since:      b.since,
		Forgotten:  b.forgotten,
		DialErrors: b.dialErrs,
		Resets:     b.resets,
	}
}

// state holds the current target, the draining ones and the generation.
type state struct {
	// switchMu serialises switches so that the state file always holds the
	// target that memory holds; it is taken before mu and held across the
	// file write, which mu is not (accepts must not wait on an fsync).
	switchMu sync.Mutex

	mu       sync.Mutex
	gen      int
	current  *backend
	draining []*backend // newest first
	// canary, while a split is on, gets percent of the new connections;
	// picks counts the connections split so far, so the share is exact
	// rather than random (every 100 connections carry percent to it).
	canary  *backend
	percent int
	picks   uint64
	// changed is closed and replaced whenever the current target changes,
	// to wake connections that are waiting for a target or backing off.
	changed chan struct{}
}

func newState() *state {
	return &state{changed: make(chan struct{})}
}

// restore installs a target loaded from the state file.
func (s *state) restore(gen int, t Target, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen = gen
	s.current = newBackend(t, since)
	close(s.changed)
	s.changed = make(chan struct{})
}

// set makes t the current target. persist is called with the new
// generation before anything changes in memory, so a failed save leaves the
// relay as it was. Setting the current target again changes nothing.
// prev is the target that was current before, if any.
func (s *state) set(t Target, now time.Time, persist func(gen int, t Target, since time.Time) error) (st Status, prev *Target, switched bool, err error) {
	s.switchMu.Lock()
	defer s.switchMu.Unlock()

	s.mu.Lock()
	if s.current != nil && s.current.target.Equal(t) && s.canary == nil {
		st = s.statusLocked()
		s.mu.Unlock()
		return st, nil, false, nil
	}
	gen := s.gen + 1
	s.mu.Unlock()

	// Only set changes current and gen, and switchMu keeps other sets out,
	// so gen is still right after the unlocked write.
	if err := persist(gen, t, now); err != nil {
		return Status{}, nil, false, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// A set ends any split: promoting the canary keeps its backend (and
	// counts); setting anything else sends the canary draining.
	var next *backend
	if c := s.canary; c != nil {
		if c.target.Equal(t) {
			next = c
		} else {
			s.drainLocked(c, now)
		}
		s.canary, s.percent = nil, 0
	}
	if next == nil && s.current != nil && s.current.target.Equal(t) {
		// Aborting a split: the current target stays current.
		s.gen = gen
		close(s.changed)
		s.changed = make(chan struct{})
		return s.statusLocked(), nil, true, nil
	}
	if next == nil {
		next = s.takeDrainingLocked(t)
	}
	if next == nil {
		next = newBackend(t.clone(), now)
	}
	next.since = now
	if old := s.current; old != nil {
		s.drainLocked(old, now)
		pt := old.target.clone()
		prev = &pt
	}
	s.current = next
	s.gen = gen
	close(s.changed)
	s.changed = make(chan struct{})
	return s.statusLocked(), prev, true, nil
}

// drainLocked sends b draining, newest first, remembering how many
// connections it had open at that moment.
func (s *state) drainLocked(b *backend, now time.Time) {
	b.since = now
	b.openAtDrain = b.active
	s.draining = slices.Insert(s.draining, 0, b)
}

// takeDrainingLocked removes and returns the draining backend equal to t,
// so switching back to a container still draining keeps its counts.
func (s *state) takeDrainingLocked(t Target) *backend {
	for i, b := range s.draining {
		if b.target.Equal(t) {
			s.draining = slices.Delete(s.draining, i, i+1)
			b.forgotten = false
			return b
		}
	}
	return nil
}

// candidates returns the backends to dial in order: the current target,
// then the draining targets not forgotten, newest first. The channel is
// closed when the current target changes.
func (s *state) candidates() ([]*backend, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*backend, 0, 2+len(s.draining))
	if s.current != nil {
		out = append(out, s.current)
	}
	if s.canary != nil {
		// The other one is the first fallback either way.
		if canaryTurn(s.picks, s.percent) {
			out = slices.Insert(out, 0, s.canary)
		} else {
			out = append(out, s.canary)
		}
		s.picks++
	}
	for _, b := range s.draining {
		if !b.forgotten {
			out = append(out, b)
		}
	}
	return out, s.changed
}

// acquire counts a connection against b before it is dialed, so that
// wait-drained never reports a target drained while a dial to it is in
// flight. It refuses a backend forgotten since candidates returned it.
func (s *state) acquire(b *backend) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.forgotten {
		return false
	}
	if b.active == 0 {
		b.idle = make(chan struct{})
	}
	b.active++
	return true
}

// established records that a connection acquired on b was dialed.
func (s *state) established(b *backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.total++
}

// release ends a connection acquired on b.
func (s *state) release(b *backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.active--
	if b.active > 0 {
		return
	}
	close(b.idle)
	if b.forgotten {
		s.draining = slices.DeleteFunc(s.draining, func(d *backend) bool { return d == b })
	}
}

// canaryTurn reports whether connection n (from 0) of a split goes to the
// canary: the n-th connection does when the canary's exact share of the
// first n+1 (percent of them) reaches a whole connection more than of the
// first n, so every run of 100 connections sends exactly percent to it,
// spread evenly.
func canaryTurn(n uint64, percent int) bool {
	p := uint64(percent)
	return (n+1)*p/100 > n*p/100
}

// dialFailed counts a failed dial to b.
func (s *state) dialFailed(b *backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.dialErrs++
}

// backendReset counts a connection to b that its backend ended with a
// reset.
func (s *state) backendReset(b *backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.resets++
}

// split sends percent (1-99) of new connections to canary and the rest to
// the current target; percent 0 ends the split, the canary draining. A
// draining target made the canary keeps its counts. Not persisted: a
// relay restarted during a split comes back with the current target alone,
// which is the side a canary falls back to anyway.
func (s *state) split(canary Target, percent int, now time.Time) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil {
		return Status{}, fmt.Errorf("%w: split: no current target to split with", errBadRequest)
	}
	if percent == 0 {
		if c := s.canary; c != nil {
			s.drainLocked(c, now)
			s.canary, s.percent = nil, 0
		}
		return s.statusLocked(), nil
	}
	if s.current.target.Equal(canary) {
		return Status{}, fmt.Errorf("%w: split: target %s is the current target, not a canary", errBadRequest, canary.Name)
	}
	if c := s.canary; c != nil && !c.target.Equal(canary) {
		s.drainLocked(c, now)
		s.canary = nil
	}
	if s.canary == nil {
		b := s.takeDrainingLocked(canary)
		if b == nil {
			b = newBackend(canary.clone(), now)
		}
		b.since = now
		s.canary, s.picks = b, 0
	}
	s.percent = percent
	close(s.changed)
	s.changed = make(chan struct{})
	return s.statusLocked(), nil
}

func (s *state) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *state) statusLocked() Status {
	st := Status{Generation: s.gen, Draining: make([]TargetStatus, 0, len(s.draining))}
	if s.current != nil {
		ts := s.current.status()
		st.Current = &ts
	}
	if s.canary != nil {
		ts := s.canary.status()
		st.Canary, st.CanaryPercent = &ts, s.percent
	}
	for _, b := range s.draining {
		st.Draining = append(st.Draining, b.status())
	}
	return st
}

// drainingNamedLocked returns the draining backends called name, or an
// error saying why there are none.
func (s *state) drainingNamedLocked(name string) ([]*backend, error) {
	var out []*backend
	for _, b := range s.draining {
		if b.target.Name == name {
			out = append(out, b)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if (s.current != nil && s.current.target.Name == name) || (s.canary != nil && s.canary.target.Name == name) {
		return nil, fmt.Errorf("target %q: %w", name, ErrNotDraining)
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownTarget, name)
}

// waitDrained blocks until no draining target called name has an active
// connection, or timeout passes (drained false), or ctx ends (error). A
// target forgotten and dropped while we wait counts as drained: it was
// dropped because its count reached zero.
func (s *state) waitDrained(ctx context.Context, name string, timeout time.Duration) (WaitResult, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	first := true
	waited := -1
	for {
		s.mu.Lock()
		bs, err := s.drainingNamedLocked(name)
		if err != nil && (first || !errors.Is(err, ErrUnknownTarget)) {
			s.mu.Unlock()
			return WaitResult{}, err
		}
		first = false
		var idle <-chan struct{}
		open, atDrain := 0, 0
		for _, b := range bs {
			if b.active > 0 && idle == nil {
				idle = b.idle
			}
			open += b.active
			atDrain += b.openAtDrain
		}
		if waited < 0 {
			// Those open when traffic moved, or more if dial fallbacks
			// reached the target since.
			waited = max(open, atDrain)
		}
		if idle == nil {
			st := s.statusLocked()
			s.mu.Unlock()
			return WaitResult{Drained: true, Waited: waited, Status: st}, nil
		}
		s.mu.Unlock()

		select {
		case <-idle:
		case <-timer.C:
			s.mu.Lock()
			bs, _ := s.drainingNamedLocked(name)
			open := 0
			for _, b := range bs {
				open += b.active
			}
			st := s.statusLocked()
			s.mu.Unlock()
			return WaitResult{Drained: false, Waited: waited, Open: open, Status: st}, nil
		case <-ctx.Done():
			return WaitResult{}, ctx.Err()
		}
	}
}

// forget stops offering the draining targets called name as a dial
// fallback and drops those without active connections from the status;
// the others are dropped when their last connection ends.
func (s *state) forget(name string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bs, err := s.drainingNamedLocked(name)
	if err != nil {
		return Status{}, err
	}
	for _, b := range bs {
		b.forgotten = true
	}
	s.draining = slices.DeleteFunc(s.draining, func(b *backend) bool { return b.forgotten && b.active == 0 })
	return s.statusLocked(), nil
}
