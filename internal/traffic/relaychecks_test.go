package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/relay"
)

// TestControlFallback pins which TCP control errors are retried over
// docker exec: the transport's, and a relay refusing the token baton read
// from its own container (another relay on that port here); never the
// relay's answer to a request, nor a caller's deadline.
func TestControlFallback(t *testing.T) {
	c := tcpControl{exec: &execControl{container: "baton-relay-web"}, log: slog.New(slog.DiscardHandler)}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"no error", t.Context(), nil, false},
		{"connection refused", t.Context(), errors.New("dial tcp 127.0.0.1:9: connect: connection refused"), true},
		{"relay busy", t.Context(), &relay.RemoteError{Code: "unavailable", Message: "too many connections"}, true},
		{"another relay's port", t.Context(), fmt.Errorf("set: %w", &relay.RemoteError{Code: "unauthorized", Message: "bad token"}), true},
		{"the relay's answer", t.Context(), &relay.RemoteError{Code: "bad_request", Message: "unknown target"}, false},
		{"caller gave up", canceled, errors.New("i/o timeout"), false},
	}
	for _, tc := range cases {
		if got := c.fallback(tc.ctx, "set", tc.err); got != tc.want {
			t.Errorf("%s: fallback = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestListensAsAsked: a host relay that listens elsewhere than the settings
// now ask is refused (it would be left where it is), one that matches, or a
// setting left to the relay, goes on.
func TestListensAsAsked(t *testing.T) {
	hostRelay := func(listen string) container.InspectResponse {
		return container.InspectResponse{
			ContainerJSONBase: &container.ContainerJSONBase{Name: "/baton-relay-web", HostConfig: &container.HostConfig{NetworkMode: "host"}},
			Config:            &container.Config{Labels: map[string]string{LabelRelayListen: listen}},
		}
	}
	cases := []struct {
		name     string
		listen   string
		addr     string
		port     int
		wantFail bool
	}{
		{"nothing asked", "127.0.0.1:8081", "", 0, false},
		{"same address and port", "10.0.0.11:8081", "10.0.0.11", 8081, false},
		{"same address, port left", "10.0.0.11:8081", "10.0.0.11", 0, false},
		{"another address", "127.0.0.1:8081", "10.0.0.11", 0, true},
		{"another port", "10.0.0.11:8081", "", 9000, true},
	}
	for _, tc := range cases {
		r := &Relay{settings: deploy.Settings{RelayAddress: tc.addr, RelayPort: tc.port}}
		err := r.listensAsAsked(hostRelay(tc.listen))
		if (err != nil) != tc.wantFail || (err != nil && (!errors.Is(err, deploy.ErrInvalid) || !strings.Contains(err.Error(), "docker rm -f baton-relay-web"))) {
			t.Errorf("%s: got %v, want failure %v", tc.name, err, tc.wantFail)
		}
	}
	// A relay of an earlier version (published port, bridge network) is
	// left alone.
	old := hostRelay("")
	old.HostConfig.NetworkMode = "bridge"
	if err := (&Relay{settings: deploy.Settings{RelayAddress: "10.0.0.11"}}).listensAsAsked(old); err != nil {
		t.Errorf("earlier relay: %v", err)
	}
}
