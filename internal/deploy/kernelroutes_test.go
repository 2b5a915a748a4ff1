package deploy

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

// fakeKernelRoutes is a host's kernel paths, by service.
type fakeKernelRoutes struct {
	mu     sync.Mutex
	routed map[string]bool
	hasErr error
	calls  []string
	nginx  []string // the nginx container each call named
}

// Turning the kernel path off looks in the nginx container's namespace
// that the operator named, never in one a label alone names.
func TestKernelPathOffNamesOnlyTheOperatorsNginx(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Settings
		want string
	}{
		{"the operator's nginx container", Settings{NginxContainer: "proxy"}, "proxy"},
		{"a label's", Settings{NginxContainer: "victim", nginxByLabel: true}, ""},
		{"nginx on the host", Settings{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernelRoutes{routed: map[string]bool{"web": true}}
			d := &Deployer{KernelRoutes: k}
			if err := d.dropKernelPath(t.Context(), Service{Key: "web", Name: "web"}, tc.s, func(string) {}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(k.calls, []string{"has web", "remove web"}) || !slices.Equal(k.nginx, []string{tc.want, tc.want}) {
				t.Fatalf("calls %v naming %q, want has and remove naming %q", k.calls, k.nginx, tc.want)
			}
		})
	}
}

func (k *fakeKernelRoutes) Has(_ context.Context, service, nginx string) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "has "+service)
	k.nginx = append(k.nginx, nginx)
	return k.routed[service], k.hasErr
}

func (k *fakeKernelRoutes) Remove(_ context.Context, service, nginx string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "remove "+service)
	k.nginx = append(k.nginx, nginx)
	delete(k.routed, service)
	return nil
}

// TestKernelPathOffRemovesTheRoute: a service whose settings no longer ask
// for the kernel path loses its route, after its traffic has its path
// (Ensure first); one that still asks for it keeps it; a host whose rules
// cannot be read does not fail the deploy; an engine on another machine
// (a rollout's host) loses its route the same way, in its own firewall.
func TestKernelPathOffRemovesTheRoute(t *testing.T) {
	with := withFlags
	for _, tc := range []struct {
		name       string
		flags      map[string]string
		remote     bool
		hasErr     error
		wantRouted bool
		wantCalls  []string
	}{
		{"on: kept", with(map[string]string{"kernel-path": "true"}), false, nil, true, nil},
		{"off: removed", with(map[string]string{"kernel-path": "false"}), false, nil, false, []string{"has web", "remove web"}},
		{"another mode: removed", with(map[string]string{"relay": "false"}), false, nil, false, []string{"has web", "remove web"}},
		{"rules unreadable: the deploy goes on", with(nil), false, errors.New("permission denied"), true, []string{"has web"}},
		{"remote engine, off: removed there", with(nil), true, nil, false, []string{"has web", "remove web"}},
		{"remote engine, on: kept", with(map[string]string{"kernel-path": "true"}), true, nil, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "relay", "")
			k := &fakeKernelRoutes{routed: map[string]bool{"web": true}, hasErr: tc.hasErr}
			// A rollout's host: the engine elsewhere, nginx here.
			h.d.KernelRoutes, h.d.Remote, h.d.NginxHere = k, tc.remote, tc.remote
			res, err := h.deploy(t.Context(), "web:v1", tc.flags)
			if err != nil || (res.Outcome != OutcomeDeployed && res.Outcome != OutcomeUpToDate) {
				t.Fatalf("deploy: %v (%s)", err, res.Outcome)
			}
			if k.routed["web"] != tc.wantRouted || !slices.Equal(k.calls, tc.wantCalls) {
				t.Fatalf("routed %v, calls %v; want routed %v, calls %v", k.routed["web"], k.calls, tc.wantRouted, tc.wantCalls)
			}
			if tc.wantCalls != nil && !slices.Contains(h.traffic.log, "ensure web") {
				t.Fatalf("traffic log %v: the route went before traffic had its path", h.traffic.log)
			}
		})
	}
}

// TestKernelPathFromConfigSkipsRemoteEngines: the configuration file's
// kernel-path serves services whose engine runs here; a deploy to an
// engine on another machine keeps the relay instead of failing. The same
// file on a local engine turns it on (the positive control).
func TestKernelPathFromConfigSkipsRemoteEngines(t *testing.T) {
	for _, remote := range []bool{false, true} {
		h := newHarness(t, "relay", "")
		h.d.Policy.Config = map[string]string{"kernel-path": "true"}
		h.d.Remote, h.d.NginxHere = remote, remote
		if _, err := h.deploy(t.Context(), "web:v2", bakeRelayFlags); err != nil {
			t.Fatalf("remote %v: %v", remote, err)
		}
		if got := h.traffic.lastSettings.KernelPath; got == remote {
			t.Errorf("remote %v: kernel path %v", remote, got)
		}
	}
}
