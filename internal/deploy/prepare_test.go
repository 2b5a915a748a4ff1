package deploy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// preparingTraffic is fakeTraffic that also readies a new container while
// it warms up, as the kernel path does.
type preparingTraffic struct {
	*fakeTraffic
	mu       sync.Mutex
	prepared []string // "<name> <state when prepared>"
	err      error
	// block makes Prepare wait until its context ends, as a connect
	// retried against a slow engine would.
	block bool
}

func (p *preparingTraffic) Prepare(ctx context.Context, next Endpoint) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prepared = append(p.prepared, next.Name+" "+p.eng.state(next.ID))
	p.fakeTraffic.mu.Lock()
	p.fakeTraffic.log = append(p.fakeTraffic.log, "prepare "+next.Name)
	p.fakeTraffic.mu.Unlock()
	if p.block {
		p.mu.Unlock()
		<-ctx.Done()
		p.mu.Lock()
		return ctx.Err()
	}
	return p.err
}

// The traffic readies the new container once, while it runs and before
// traffic moves to it; a failure there leaves the work to Finish and does
// not fail the deploy. Traffic that moves nothing (none) is not asked.
func TestPrepareRunsBesideWarmUp(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mode      string
		flags     map[string]string
		err       error
		wantCalls int
	}{
		{"relay", "relay", relayFlags, nil, 1},
		{"relay, prepare fails", "relay", relayFlags, errors.New("no kernel network"), 1},
		{"none", "none", nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.mode, "")
			p := &preparingTraffic{fakeTraffic: h.traffic, err: tc.err}
			h.d.Traffic = func(ctx context.Context, svc Service, s Settings) (Traffic, error) {
				if _, err := h.traffic.factory(ctx, svc, s); err != nil {
					return nil, err
				}
				return p, nil
			}
			res, err := h.deploy(t.Context(), "web:v2", tc.flags)
			if err != nil {
				t.Fatalf("deploy: %v", err)
			}
			if res.Outcome != OutcomeDeployed {
				t.Fatalf("outcome %s, want deployed", res.Outcome)
			}
			if h.eng.imageOf("web") != "web:v2" {
				t.Fatalf("web runs %s, want web:v2", h.eng.imageOf("web"))
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.prepared) != tc.wantCalls {
				t.Fatalf("prepared %v, want %d call(s)", p.prepared, tc.wantCalls)
			}
			if tc.wantCalls == 0 {
				return
			}
			if !strings.HasPrefix(p.prepared[0], "web-baton-") || !strings.HasSuffix(p.prepared[0], " running") {
				t.Fatalf("prepared %q, want the new container while it runs", p.prepared[0])
			}
			log := strings.Join(h.traffic.log, "\n")
			if i, j := strings.Index(log, "prepare web-baton-"), strings.Index(log, "switch "); i < 0 || j < 0 || i > j {
				t.Fatalf("prepare not before the switch:\n%s", log)
			}
		})
	}
}

// A warm-up that fails does not wait for the preparation: it is cancelled,
// and the deploy rolls back with the old container serving. Without the
// cancel this deploy would never end.
func TestPrepareCancelledWhenWarmUpFails(t *testing.T) {
	h := newHarness(t, "relay", "")
	p := &preparingTraffic{fakeTraffic: h.traffic, block: true}
	h.d.Traffic = func(ctx context.Context, svc Service, s Settings) (Traffic, error) {
		if _, err := h.traffic.factory(ctx, svc, s); err != nil {
			return nil, err
		}
		return p, nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.deploy(t.Context(), "web:sick", withFlags(map[string]string{"health-timeout": "1s"}))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unhealthy") {
			t.Fatalf("deploy of an unhealthy image: %v, want it refused as unhealthy", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the deploy waited for a preparation its failed warm-up should have cancelled")
	}
	h.assertOldServing()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.prepared) != 1 {
		t.Fatalf("prepared %v, want the new container once", p.prepared)
	}
}
