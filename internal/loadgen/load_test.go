package loadgen_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
)

// server is an httptest server that counts what it sees.
type server struct {
	*httptest.Server
	requests, posts, badBodies, conns atomic.Int64
}

// newServer serves with h after counting; h may be nil for a plain 200 v1.
func newServer(t *testing.T, h func(n int64, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		b, err := io.ReadAll(r.Body)
		if r.Method == http.MethodPost {
			s.posts.Add(1)
			if err != nil || len(b) != loadgen.BodySize {
				s.badBodies.Add(1)
			}
		}
		if h != nil {
			h(n, w, r)
			return
		}
		w.Header().Set("X-Version", "v1")
		io.WriteString(w, "v1 ok\n")
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func run(t *testing.T, cfg loadgen.Config) *loadgen.Result {
	t.Helper()
	res, err := loadgen.Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Log(res.Summary())
	return res
}

func TestCountsSuccessesOverKeptAliveConnections(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	res := run(t, loadgen.Config{URL: srv.URL + "/x", Clients: 4, MaxRequests: 200})
	if res.Total() != 200 || res.Failed() != 0 || len(res.Failures()) != 0 {
		t.Fatalf("total %d failed %d, want 200 and 0", res.Total(), res.Failed())
	}
	if got := res.Versions(); len(got) != 1 || got["v1"] != 200 {
		t.Fatalf("versions %v, want v1=200", got)
	}
	posts := 0
	for _, s := range res.Samples() {
		if s.Method == http.MethodPost {
			posts++
		}
	}
	// Each client alternates from its own phase, so the split is even to
	// within one request per client.
	if srv.requests.Load() != 200 || int(srv.posts.Load()) != posts || posts < 96 || posts > 104 || srv.badBodies.Load() != 0 {
		t.Fatalf("server saw %d requests, %d POSTs (client sent %d), %d bad bodies; want 200, about 100 (PostRatio 0.5), 0",
			srv.requests.Load(), srv.posts.Load(), posts, srv.badBodies.Load())
	}
	// About one kept-alive connection per client. Not exactly: Go's
	// transport may dial while the last response's connection is still on
	// its way back to the idle pool, and then keep whichever comes first.
	if c := srv.conns.Load(); c > 12 {
		t.Fatalf("%d connections for 4 clients and 200 requests: keep-alive is off", c)
	}
	reused := 0
	for _, s := range res.Samples() {
		if s.Reused {
			reused++
		}
	}
	if reused < 180 {
		t.Fatalf("%d of 200 requests reused a connection", reused)
	}
	if re := regexp.MustCompile(`^failed 0/200, p50 \S+ms p99 \S+ms max \S+ms, versions v1=200$`); !re.MatchString(res.Summary()) {
		t.Fatalf("summary %q", res.Summary())
	}
}

func TestCountsErrorStatuses(t *testing.T) {
	t.Parallel()
	var fives atomic.Int64
	srv := newServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n%4 == 0 {
			fives.Add(1)
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Version", "v2")
	})
	res := run(t, loadgen.Config{URL: srv.URL, Clients: 3, MaxRequests: 100, PostRatio: -1})
	if res.Total() != 100 || res.Failed() != int(fives.Load()) || res.Failed() != 25 {
		t.Fatalf("total %d failed %d, server sent %d 500s", res.Total(), res.Failed(), fives.Load())
	}
	for _, f := range res.Failures() {
		if f.Status != 500 || f.Err != "status 500: boom" || f.Method != http.MethodGet {
			t.Fatalf("failure %+v", f)
		}
	}
	if got := res.Versions(); got["v2"] != 75 || len(got) != 1 {
		t.Fatalf("versions %v, want v2=75 (failures not counted)", got)
	}
	if srv.posts.Load() != 0 {
		t.Fatalf("%d POSTs with PostRatio -1", srv.posts.Load())
	}
}

// hijackClose drops the connection without answering.
func hijackClose(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

func TestClosedConnectionsFailPostsAndGetsAreRetried(t *testing.T) {
	t.Parallel()
	var closes atomic.Int64
	srv := newServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n%5 == 0 {
			closes.Add(1)
			hijackClose(t, w)
			return
		}
		w.Header().Set("X-Version", "v1")
	})
	// POSTs are not retried: every dropped connection is a failed request.
	res := run(t, loadgen.Config{URL: srv.URL, Clients: 4, MaxRequests: 200, PostRatio: 1})
	if c := int(closes.Load()); res.Failed() != c || c < 30 {
		t.Fatalf("POST: failed %d, server dropped %d connections", res.Failed(), c)
	}
	for _, f := range res.Failures() {
		if f.Status != 0 || !strings.Contains(f.Err, "EOF") {
			t.Fatalf("failure %+v, want an EOF with no status", f)
		}
	}

	// A GET whose reused connection is dropped is resent on a new one by
	// Go's transport, so most of these drops are invisible to the client.
	closes.Store(0)
	res = run(t, loadgen.Config{URL: srv.URL, Clients: 4, MaxRequests: 200, PostRatio: -1})
	if c := int(closes.Load()); res.Failed() >= c {
		t.Fatalf("GET: failed %d of %d drops: expected the transport to retry on reused connections", res.Failed(), c)
	}
	if res.Total() != 200 {
		t.Fatalf("GET: total %d, want 200 (retries are not extra requests)", res.Total())
	}
}

func TestStopsAtMaxRequests(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	res := run(t, loadgen.Config{URL: srv.URL, Clients: 8, MaxRequests: 137, Duration: time.Minute})
	if res.Total() != 137 || srv.requests.Load() != 137 || res.Reason != "max requests" {
		t.Fatalf("total %d, server %d, reason %q; want 137, 137, max requests", res.Total(), srv.requests.Load(), res.Reason)
	}
}

func TestStopsAtDuration(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	const d = 300 * time.Millisecond
	res := run(t, loadgen.Config{URL: srv.URL, Clients: 2, Duration: d})
	if res.Reason != "duration" || res.Total() == 0 {
		t.Fatalf("reason %q, total %d", res.Reason, res.Total())
	}
	if el := res.End.Sub(res.Start); el < d || el > d+2*time.Second {
		t.Fatalf("ran %s for a %s duration", el, d)
	}
	last := res.Samples()[res.Total()-1]
	if last.Start.After(res.Start.Add(d + 100*time.Millisecond)) {
		t.Fatalf("a request started at +%s, after the duration", last.Start.Sub(res.Start))
	}
}

func TestRateIsPerClient(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	res := run(t, loadgen.Config{URL: srv.URL, Clients: 2, Rate: 20, Duration: time.Second})
	// 20/s for 1s on each of 2 clients: 40, give or take a tick.
	if n := res.Total(); n < 32 || n > 44 {
		t.Fatalf("total %d, want about 40", n)
	}
}

func TestStopAndCancel(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil)
	l, err := loadgen.Start(t.Context(), loadgen.Config{URL: srv.URL, Clients: 2, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Completed() < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // test-side poll: no event for "some requests done"
	}
	res := l.Stop()
	if res.Reason != "stopped" || res.Total() < 20 || res.Failed() != 0 {
		t.Fatalf("reason %q, total %d, failed %d", res.Reason, res.Total(), res.Failed())
	}
	if l.Stop() != res {
		t.Fatalf("second Stop returned another result")
	}

	ctx, cancel := context.WithCancel(t.Context())
	l, err = loadgen.Start(ctx, loadgen.Config{URL: srv.URL, Clients: 2, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("load still running 10s after its context was canceled")
	}
	if res := l.Wait(); !strings.HasPrefix(res.Reason, "canceled") || res.Failed() != 0 {
		t.Fatalf("reason %q, failed %d", res.Reason, res.Failed())
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	// The handler waits for the client to give up; the server's Close waits
	// for the handler.
	srv := newServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	res := run(t, loadgen.Config{URL: srv.URL, Clients: 2, MaxRequests: 4, Timeout: 100 * time.Millisecond})
	if res.Failed() != 4 {
		t.Fatalf("failed %d of %d, want all 4 to time out", res.Failed(), res.Total())
	}
	for _, f := range res.Failures() {
		if !strings.Contains(f.Err, "Timeout") || f.Duration > 2*time.Second {
			t.Fatalf("failure %+v, want a client timeout near 100ms", f)
		}
	}
}

func TestLatencyInsideWindows(t *testing.T) {
	t.Parallel()
	var slow atomic.Bool
	srv := newServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(40 * time.Millisecond)
		}
	})
	l, err := loadgen.Start(t.Context(), loadgen.Config{URL: srv.URL, Clients: 2, Duration: 900 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	w := loadgen.Window{Start: time.Now()}
	slow.Store(true)
	time.Sleep(300 * time.Millisecond)
	slow.Store(false)
	w.End = time.Now()
	res := l.Wait()
	in, out := res.Latency([]loadgen.Window{w})
	t.Logf("inside %v (%d), outside %v (%d)", in, in.Count, out, out.Count)
	if in.Count+out.Count != res.Total() || in.Count == 0 || out.Count == 0 {
		t.Fatalf("split %d + %d of %d", in.Count, out.Count, res.Total())
	}
	if in.P50 < 40*time.Millisecond || out.P50 >= 40*time.Millisecond {
		t.Fatalf("inside %v, outside %v: the slow window does not show", in, out)
	}
	if all := res.Overall(); all.Count != res.Total() || all.Max != max(in.Max, out.Max) {
		t.Fatalf("overall %v", all)
	}
}

func TestRefusesUnboundedAndNonLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  loadgen.Config
		want error
	}{
		{loadgen.Config{URL: "http://127.0.0.1:1/"}, loadgen.ErrUnbounded},
		{loadgen.Config{URL: "http://192.0.2.1/", MaxRequests: 1}, loadgen.ErrNotLoopback},
		{loadgen.Config{URL: "http://example.com/", MaxRequests: 1}, loadgen.ErrNotLoopback},
		{loadgen.Config{URL: "http://192.0.2.1/", MaxRequests: 1, AllowHosts: []string{"192.0.2.2"}}, loadgen.ErrNotLoopback},
		{loadgen.Config{URL: "http://example.com/", MaxRequests: 1, AllowHosts: []string{"example.com"}}, loadgen.ErrNotLoopback},
	} {
		if _, err := loadgen.Start(t.Context(), tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("%+v: error %v, want %v", tc.cfg, err, tc.want)
		}
	}
	// An allowed host passes the check. The context is over before the
	// load starts, so nothing is sent off the machine.
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if res, err := loadgen.Run(done, loadgen.Config{URL: "http://192.0.2.1:1/", MaxRequests: 1, AllowHosts: []string{"192.0.2.1"}}); err != nil || res.Total() != 0 {
		t.Errorf("allowed host 192.0.2.1: %v (result %v)", err, res)
	}
	for _, u := range []string{"http://localhost:1/", "http://[::1]:1/", "http://127.0.0.2:1/"} {
		res, err := loadgen.Run(t.Context(), loadgen.Config{URL: u, MaxRequests: 1, Clients: 1, Timeout: time.Second})
		if err != nil || res.Total() != 1 {
			t.Errorf("%s: %v", u, err)
		}
	}
}
