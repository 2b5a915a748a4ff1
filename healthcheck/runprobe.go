package healthcheck

import (
	"context"
	"time"
)

type probeResult struct {
	idx int
	err error
	// afterHealthy: the attempt began after Docker health was healthy, so
	// a pass counts.
	afterHealthy bool
}

// runProbe retries p every interval until it passes after healthy is
// closed, sending each outcome to out. A pass before that proves the
// network path early but not that the app is ready by Docker's standard, so
// the probe idles until healthy and then checks again at once.
func runProbe(ctx context.Context, idx int, p Probe, interval time.Duration, healthy <-chan struct{}, out chan<- probeResult) {
	timer := time.NewTimer(interval)
	timer.Stop()
	defer timer.Stop()
	for {
		after := isClosed(healthy)
		err := p.Check(ctx)
		if ctx.Err() != nil {
			// Wait is over; an error caused by that would only hide the
			// last real one.
			return
		}
		select {
		case out <- probeResult{idx: idx, err: err, afterHealthy: after}:
		case <-ctx.Done():
			return
		}
		if err == nil && after {
			return
		}
		wake := healthy
		if after {
			wake = nil
		}
		var tick <-chan time.Time
		if err != nil {
			timer.Reset(interval)
			tick = timer.C
		}
		select {
		case <-tick:
		case <-wake:
		case <-ctx.Done():
			return
		}
		timer.Stop()
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// runEarly runs check every interval until it passes, which it says on out
// (once, buffered), or until healthy is closed or ctx is done.
func runEarly(ctx context.Context, check Probe, interval time.Duration, healthy <-chan struct{}, out chan<- string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-healthy:
			return
		case <-t.C:
		}
		if check.Check(ctx) == nil {
			out <- check.String() + " passed"
			return
		}
	}
}
