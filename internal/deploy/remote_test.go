package deploy

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckRemote: on an engine on another machine, what would run here
// instead of there is refused as unsupported (exit 2, nothing changed);
// the relay with an nginx container, and health from the image's
// HEALTHCHECK alone, go ahead. A local engine is never refused.
func TestCheckRemote(t *testing.T) {
	relayCtr := Settings{NginxUpstream: "/etc/nginx/baton/web.conf", NginxContainer: "nginx", Relay: true, HTTPProbe: "/healthz", WarmupRequests: 3}
	cases := []struct {
		name string
		s    Settings
		want string // "" = allowed
	}{
		{"relay with an nginx container, probes and warm-up", relayCtr, ""},
		{"nothing in front, HEALTHCHECK only", Settings{}, ""},
		{"relay with nginx on the host", Settings{NginxUpstream: "/etc/nginx/baton/web.conf", NginxReload: "nginx -s reload", Relay: true}, "--nginx-container NAME"},
		{"nginx-reload mode", Settings{NginxUpstream: "/etc/nginx/baton/web.conf", NginxContainer: "nginx"}, "use the relay"},
		{"probes without a relay", Settings{HTTPProbe: "/healthz", TCPProbe: true, WarmupRequests: 2}, "--http-probe, --tcp-probe and --warmup-requests cannot run"},
	}
	for _, tc := range cases {
		err := checkRemote(true, tc.s)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want ErrUnsupported mentioning %q", tc.name, err, tc.want)
		case tc.want != "" && ExitCode(err) != 2:
			t.Errorf("%s: exit code %d, want 2", tc.name, ExitCode(err))
		}
		if err := checkRemote(false, tc.s); err != nil {
			t.Errorf("%s on a local engine: %v", tc.name, err)
		}
	}
}
