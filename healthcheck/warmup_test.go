package healthcheck

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestWarmUp(t *testing.T) {
	var calls atomic.Int32
	var failAt atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := calls.Add(1); n == failAt.Load() {
			http.Error(w, "cache cold", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()

	if err := WarmUp(t.Context(), srv.URL+"/", 5); err != nil {
		t.Fatalf("WarmUp: %v", err)
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("server saw %d requests, want 5", n)
	}

	calls.Store(0)
	failAt.Store(3)
	err := WarmUp(t.Context(), srv.URL+"/", 5)
	if err == nil || !strings.Contains(err.Error(), "warm-up request 3/5: GET "+srv.URL+"/: 500 Internal Server Error: cache cold") {
		t.Fatalf("err = %v, want request 3/5 failing with 500", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("server saw %d requests, want WarmUp to stop at the failure (3)", n)
	}
}
