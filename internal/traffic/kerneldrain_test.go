package traffic

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A drain of the kernel path's connections waits while any are open and
// while it cannot tell (a helper's exec that failed is looked at again, not
// taken for "none left"), and stops waiting when none are left, when the
// container is gone, or at the deadline.
func TestWaitKernelConns(t *testing.T) {
	execFailed := errors.New("exec: connection refused")
	open := func(n int) connLook { return connLook{open: n, ok: true} }
	gone := connLook{}
	failed := connLook{err: execFailed}
	for _, tc := range []struct {
		name   string
		first  connLook
		looks  []connLook // the later looks; the last repeats
		waited int
		left   int
		err    error
		polls  int // looks taken after the first
	}{
		{name: "none open", first: open(0), looks: []connLook{open(9)}, polls: 0},
		{name: "gone at once", first: gone, looks: []connLook{open(9)}, polls: 0},
		{name: "open then closed", first: open(3), looks: []connLook{open(2), open(1), open(0)}, waited: 3, polls: 3},
		{name: "open then gone", first: open(2), looks: []connLook{gone}, waited: 2, polls: 1},
		{name: "first look failed", first: failed, looks: []connLook{failed, open(4), open(0)}, waited: 4, polls: 3},
		{name: "a look fails midway", first: open(2), looks: []connLook{failed, open(1), open(0)}, waited: 2, polls: 3},
		{name: "open at the deadline", first: open(2), looks: []connLook{open(2)}, waited: 2, left: 2},
		{name: "never counted", first: failed, looks: []connLook{failed}, err: execFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			polls := 0
			count := func(context.Context) (int, bool, error) {
				l := tc.looks[min(polls, len(tc.looks)-1)]
				polls++
				return l.open, l.ok, l.err
			}
			deadline := time.Now().Add(300 * time.Millisecond)
			kd, err := waitKernelConns(context.Background(), tc.first, count, time.Millisecond, deadline)
			if err != nil {
				t.Fatal(err)
			}
			if kd.waited != tc.waited || kd.left != tc.left || !errors.Is(kd.err, tc.err) || (kd.err == nil) != (tc.err == nil) {
				t.Fatalf("got waited %d left %d err %v; want waited %d left %d err %v", kd.waited, kd.left, kd.err, tc.waited, tc.left, tc.err)
			}
			if tc.left == 0 && tc.err == nil && polls != tc.polls {
				t.Fatalf("%d looks after the first, want %d", polls, tc.polls)
			}
			if (tc.left > 0 || tc.err != nil) && time.Now().Before(deadline) {
				t.Fatal("gave up before the deadline")
			}
		})
	}
	// The relay's drain took all of --drain: one more look says what the
	// stop cuts, not the count from when traffic moved.
	looks := 0
	kd, err := waitKernelConns(context.Background(), open(3), func(context.Context) (int, bool, error) { looks++; return 1, true, nil }, time.Millisecond, time.Now().Add(-time.Second))
	if err != nil || looks != 1 || kd.waited != 3 || kd.left != 1 {
		t.Fatalf("deadline already past: %+v, %d looks, %v; want waited 3, left 1 after one look", kd, looks, err)
	}
	// A look that hangs (an exec over a dead ssh link) is given up at the
	// deadline, not waited for.
	t0 := time.Now()
	hang := func(ctx context.Context) (int, bool, error) { <-ctx.Done(); return 0, false, ctx.Err() }
	kd, err = waitKernelConns(context.Background(), open(2), hang, time.Millisecond, t0.Add(200*time.Millisecond))
	if err != nil || kd.err == nil || time.Since(t0) > 2*time.Second {
		t.Fatalf("hanging looks: %+v, %v after %s; want a failed count at about 200ms", kd, err, time.Since(t0))
	}
	// A cancelled deploy stops the wait with its error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := waitKernelConns(ctx, open(1), func(context.Context) (int, bool, error) { return 1, true, nil }, time.Millisecond, time.Now().Add(time.Minute)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
