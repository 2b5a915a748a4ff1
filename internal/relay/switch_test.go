package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSwitchUnderLoad switches the target back and forth 20 times while 8
// clients send GETs and POSTs, each on a new connection, and requires that
// not one request fails and that both backends served after the switches.
func TestSwitchUnderLoad(t *testing.T) {
	a := startHTTPBackend(t, "a")
	b := startHTTPBackend(t, "b")
	r := startRelay(t, Config{})
	r.set(t, "a", a.addr)

	// Load stops between requests, never cutting one: every connection the
	// relay counts must be a whole request.
	var (
		stopped    atomic.Bool
		ok, failed atomic.Int64
		errMu      sync.Mutex
		errs       []error
		wg         sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			c := newHTTPClient()
			for i := 0; !stopped.Load(); i++ {
				err := loadRequest(t.Context(), c, r.url("/"), (w+i)%2 == 0)
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err)
					}
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}

	const switches = 20
	var hitsAtFirstSwitch [2]int64
	for i := range switches {
		time.Sleep(90 * time.Millisecond) // let load run between switches
		if i%2 == 0 {
			r.set(t, "b", b.addr)
		} else {
			r.set(t, "a", a.addr)
		}
		if i == 0 {
			hitsAtFirstSwitch = [2]int64{a.hits.Load(), b.hits.Load()}
		}
	}
	time.Sleep(150 * time.Millisecond)
	stopped.Store(true)
	wg.Wait()

	t.Logf("%d requests ok, %d failed", ok.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d requests failed, first errors: %v", n, errs)
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests under load: the test did not load the relay", ok.Load())
	}
	if a.hits.Load() == hitsAtFirstSwitch[0] || b.hits.Load() == hitsAtFirstSwitch[1] {
		t.Fatalf("both backends must serve after the switches: a %d->%d, b %d->%d",
			hitsAtFirstSwitch[0], a.hits.Load(), hitsAtFirstSwitch[1], b.hits.Load())
	}
	if w := r.warns.Load(); w != 0 {
		t.Fatalf("relay logged %d warnings under load", w)
	}

	// 20 switches ending on a; b drains, and every count returns to zero.
	res, err := r.ctl.WaitDrained(t.Context(), "b", 5*time.Second)
	if err != nil || !res.Drained {
		t.Fatalf("wait-drained b: %+v, %v", res, err)
	}
	st := r.status(t)
	if st.Generation != switches+1 || st.Current == nil || st.Current.Name != "a" || len(st.Draining) != 1 {
		t.Fatalf("status after %d switches: %+v", switches, st)
	}
	// New connections go to the current target only.
	c := newHTTPClient()
	for range 5 {
		body, err := get(t.Context(), c, r.url("/"))
		if err != nil || body != "a" {
			t.Fatalf("after the last switch to a: got %q, %v", body, err)
		}
	}
	// Every connection the relay made reached a backend handler.
	res, err = r.ctl.WaitDrained(t.Context(), "b", 5*time.Second)
	if err != nil || !res.Drained {
		t.Fatalf("wait-drained b: %+v, %v", res, err)
	}
	if _, err := r.ctl.Set(t.Context(), Target{Name: "b", Addrs: []string{b.addr}}); err != nil {
		t.Fatal(err)
	}
	res, err = r.ctl.WaitDrained(t.Context(), "a", 5*time.Second)
	if err != nil || !res.Drained {
		t.Fatalf("wait-drained a: %+v, %v", res, err)
	}
	totals := res.Current.Total + res.Draining[0].Total
	hits := uint64(a.hits.Load() + b.hits.Load())
	if want := uint64(ok.Load()) + 5; totals != hits || hits != want {
		t.Fatalf("relay counted %d connections, backends served %d requests, clients got %d answers", totals, hits, want)
	}
	if res.Current.Active != 0 || res.Draining[0].Active != 0 {
		t.Fatalf("active counts not back to zero: %+v", res.Status)
	}
}

// loadRequest sends a GET or a POST with a random body and checks the
// answer came whole from one of the backends.
func loadRequest(ctx context.Context, c *http.Client, url string, post bool) error {
	if !post {
		body, err := get(ctx, c, url)
		if err != nil {
			return fmt.Errorf("get: %w", err)
		}
		if body != "a" && body != "b" {
			return fmt.Errorf("get: unexpected body %q", body)
		}
		return nil
	}
	payload := make([]byte, 16<<10)
	if _, err := rand.Read(payload); err != nil {
		return err
	}
	sum := sha256.Sum256(payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("post: read body: %w", err)
	}
	want := hex.EncodeToString(sum[:])
	if resp.StatusCode != http.StatusOK || (string(body) != "a "+want && string(body) != "b "+want) {
		return fmt.Errorf("post: status %d, body %q", resp.StatusCode, body)
	}
	return nil
}
