package testenv_test

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/baton-sh/baton/internal/testenv"
)

func TestEnvFatalfEndsRunAndCloseCleansUp(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	env := testenv.NewEnv(t.Context(), "bench", &out)
	var order []string
	var dir string
	reached := false
	err := env.Run(func(tb testenv.TB) {
		tb.Cleanup(func() { order = append(order, "first") })
		tb.Cleanup(func() {
			order = append(order, "second")
			tb.Fatalf("cleanup failed")
		})
		dir = tb.TempDir()
		tb.Logf("hello %d", 1)
		tb.Fatalf("setup %s", "broke")
		reached = true
	})
	if err == nil || !strings.Contains(err.Error(), "setup broke") || reached {
		t.Fatalf("Run: err %v, code after Fatalf reached %v", err, reached)
	}
	if out.String() != "hello 1\n" {
		t.Fatalf("log %q", out.String())
	}
	if len(order) != 0 {
		t.Fatalf("cleanups ran before Close: %v", order)
	}
	if err := env.Run(func(testenv.TB) {}); err != nil {
		t.Fatalf("a clean Run after a failed one: %v", err)
	}
	closeErr := env.Close()
	if strings.Join(order, ",") != "second,first" {
		t.Fatalf("cleanup order %v, want second,first (and Fatalf in one must not stop the other)", order)
	}
	if closeErr == nil || !strings.Contains(closeErr.Error(), "cleanup failed") {
		t.Fatalf("Close: %v", closeErr)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir %s after Close: %v", dir, err)
	}
}

func TestEnvRunsHostNginx(t *testing.T) {
	t.Parallel()
	env := testenv.NewEnv(t.Context(), "demo", nil)
	var ng *testenv.Nginx
	if err := env.Run(func(tb testenv.TB) { ng = testenv.HostNginx(tb, testenv.NginxOpts{}) }); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ng.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := env.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := http.Get(ng.URL()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("nginx still answers after Close: %v", err)
	}
}
