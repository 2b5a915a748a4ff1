package deploy

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// fakeTraffic records where traffic goes, like the relay would.
type fakeTraffic struct {
	mu        sync.Mutex
	mode      string
	current   string // container ID traffic goes to
	log       []string
	switchErr error
	eng       *fakeEngine
	// killOnSwitch kills the deploy right after its first switch.
	killOnSwitch bool
	// lastSettings are the settings the last deploy built traffic for.
	lastSettings Settings
	// drainWaited and drainCut are what Drain reports.
	drainWaited, drainCut int
}

func (t *fakeTraffic) factory(_ context.Context, _ Service, s Settings) (Traffic, error) {
	t.mu.Lock()
	t.lastSettings = s
	t.mu.Unlock()
	return t, nil
}

func (t *fakeTraffic) Mode() string { return t.mode }

func (t *fakeTraffic) Ensure(_ context.Context, cur Endpoint) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur.IP == "" {
		return fmt.Errorf("ensure: %s has no baton address", cur.Name)
	}
	t.current = cur.ID
	t.log = append(t.log, "ensure "+cur.Name)
	return nil
}

func (t *fakeTraffic) Describe(context.Context) (string, error) { return "fake -> " + t.current, nil }

func (t *fakeTraffic) Switch(_ context.Context, from, to Endpoint) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, "switch "+from.Name+" -> "+to.Name)
	if err := t.switchErr; err != nil {
		t.switchErr = nil // one-shot: the relay answers again for the way back
		return err
	}
	if to.IP == "" {
		return fmt.Errorf("switch: %s has no baton address", to.Name)
	}
	if st := t.eng.state(to.ID); st != "running" {
		return fmt.Errorf("switch to %s which is %s", to.Name, st)
	}
	t.current = to.ID
	if t.killOnSwitch {
		t.killOnSwitch = false
		runtime.Goexit() // the deferred unlock still runs
	}
	return nil
}

func (t *fakeTraffic) Drain(_ context.Context, from Endpoint, _ time.Duration) (DrainReport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, "drain "+from.Name)
	return DrainReport{Counted: true, Waited: t.drainWaited, Cut: t.drainCut}, nil
}

func (t *fakeTraffic) Finish(_ context.Context, cur, old Endpoint) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, "finish "+cur.Name)
	return nil
}

func (t *fakeTraffic) target() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.current
}
