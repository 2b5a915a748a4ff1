package healthcheck

import (
	"testing"

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
