package healthcheck

import (
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

func TestHasDockerHealthcheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *container.Config
		want bool
	}{
		{"nil config", nil, false},
		{"none configured", &container.Config{}, false},
		{"empty test", &container.Config{Healthcheck: &container.HealthConfig{}}, false},
		{"disabled", &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"NONE"}}}, false},
		{"cmd", &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/demoapp", "-probe", "http://127.0.0.1:8080/healthz"}}}, true},
		{"shell", &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD-SHELL", "curl -f localhost"}}}, true},
	} {
		if got := HasDockerHealthcheck(tc.cfg); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDockerHealthcheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		hc   *container.HealthConfig
		ok   bool
		argv []string
		iv   time.Duration
		to   time.Duration
	}{
		{"none", nil, false, nil, 0, 0},
		{"disabled", &container.HealthConfig{Test: []string{"NONE"}}, false, nil, 0, 0},
		{"cmd, defaults", &container.HealthConfig{Test: []string{"CMD", "/app", "-health"}}, true, []string{"/app", "-health"}, 30 * time.Second, 30 * time.Second},
		{"shell", &container.HealthConfig{Test: []string{"CMD-SHELL", "curl -f localhost || exit 1"}, Interval: 2 * time.Second, Timeout: time.Second}, true, []string{"/bin/sh", "-c", "curl -f localhost || exit 1"}, 2 * time.Second, time.Second},
		{"shell with extra words", &container.HealthConfig{Test: []string{"CMD-SHELL", "a", "b"}}, false, nil, 0, 0},
		{"cmd without a command", &container.HealthConfig{Test: []string{"CMD"}}, false, nil, 0, 0},
		{"unknown form", &container.HealthConfig{Test: []string{"/app"}}, false, nil, 0, 0},
		{"start interval", &container.HealthConfig{Test: []string{"CMD", "/app"}, Interval: time.Minute, StartPeriod: time.Minute, StartInterval: 100 * time.Millisecond}, true, []string{"/app"}, 100 * time.Millisecond, 30 * time.Second},
		{"start interval without a start period", &container.HealthConfig{Test: []string{"CMD", "/app"}, StartInterval: 100 * time.Millisecond}, true, []string{"/app"}, 30 * time.Second, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := DockerHealthcheck(&container.Config{Healthcheck: tc.hc})
			if ok != tc.ok || !slices.Equal(h.Argv, tc.argv) || (ok && (h.Interval != tc.iv || h.Timeout != tc.to)) {
				t.Fatalf("got %+v %v, want %q interval %s timeout %s %v", h, ok, tc.argv, tc.iv, tc.to, tc.ok)
			}
		})
	}
}

// A shell-form check runs through the container's SHELL, as Docker runs it.
func TestDockerHealthcheckShell(t *testing.T) {
	cfg := &container.Config{Shell: []string{"/bin/bash", "-o", "pipefail", "-c"}, Healthcheck: &container.HealthConfig{Test: []string{"CMD-SHELL", "curl -f localhost | grep ok"}}}
	h, ok := DockerHealthcheck(cfg)
	if want := []string{"/bin/bash", "-o", "pipefail", "-c", "curl -f localhost | grep ok"}; !ok || !slices.Equal(h.Argv, want) {
		t.Fatalf("argv %q, want %q", h.Argv, want)
	}
	if cfg.Shell[len(cfg.Shell)-1] != "-c" || len(cfg.Shell) != 4 {
		t.Fatalf("the container's SHELL was changed: %q", cfg.Shell)
	}
}
