package healthcheck

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHTTPProbeErrorNamesURLStatusAndBody(t *testing.T) {
	body := "not ready: " + strings.Repeat("x", 500)
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, body, http.StatusServiceUnavailable)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	p := HTTP(strings.TrimPrefix(srv.URL, "http://"), "healthz")
	var err error
	for range 3 {
		err = p.Check(t.Context())
	}
	if err == nil {
		t.Fatal("Check passed on a 503")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "GET "+srv.URL+"/healthz: 503 Service Unavailable: not ready: xxx") {
		t.Errorf("error = %q", msg)
	}
	if strings.Count(msg, "x") > bodyExcerpt {
		t.Errorf("error quotes more than %d bytes of the body: %d", bodyExcerpt, len(msg))
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("3 attempts used %d connections, want 3 (no keep-alive)", n)
	}
}

func TestHTTPProbeConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	err = HTTP(addr, "/healthz").Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.HasPrefix(err.Error(), "GET http://"+addr+"/healthz: ") {
		t.Fatalf("err = %v, want GET url: ... connection refused", err)
	}
}

func TestHTTPProbeHealthy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	if err := HTTP(strings.TrimPrefix(srv.URL, "http://"), "/").Check(t.Context()); err != nil {
		t.Fatalf("Check on a 204: %v", err)
	}
}
