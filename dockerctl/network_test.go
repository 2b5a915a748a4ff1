package dockerctl

import (
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
)

// TestOwnNetworkNames: a service's kernel network can never be another
// service's network (service "x-kernel" against "x"), and both are baton's,
// so a deploy never copies them onto a new container.
func TestOwnNetworkNames(t *testing.T) {
	names := map[string]string{}
	for _, key := range []string{"web", "web-kp", "kp-web", "shop/web", "x-kernel", "x"} {
		for _, n := range []string{ServiceNetwork(key), KernelNetwork(key)} {
			if other, dup := names[n]; dup {
				t.Errorf("network %s named for %s and for %s", n, other, key)
			}
			names[n] = key
			if !IsBatonNetwork(n) {
				t.Errorf("IsBatonNetwork(%s) = false", n)
			}
		}
	}
	for _, user := range []string{"bridge", "shop_default", "baton-kpx", "baton-svcx"} {
		if IsBatonNetwork(user) {
			t.Errorf("IsBatonNetwork(%s) = true: a user's network", user)
		}
	}
}

// TestCheckOwnNetwork: an existing kernel network must be baton's own (its
// bridge's route_localnet is changed), a service network keeps its
// earlier rule (internal, for this service); the legitimate ones pass.
func TestCheckOwnNetwork(t *testing.T) {
	own := func(role string) map[string]string {
		return map[string]string{"baton.managed": "true", "baton.role": role, LabelNetworkFor: "web"}
	}
	for _, tc := range []struct {
		name     string
		role     string
		internal bool
		labels   map[string]string
		errHas   string
	}{
		{"kernel network made by baton", RoleKernelNetwork, true, own(RoleKernelNetwork), ""},
		{"service network made by baton", RoleServiceNetwork, true, own(RoleServiceNetwork), ""},
		{"kernel network declared by a compose file", RoleKernelNetwork, true, map[string]string{LabelNetworkFor: "web"}, "not made by baton"},
		{"kernel network with a service network's role", RoleKernelNetwork, true, own(RoleServiceNetwork), "not made by baton"},
		{"kernel network of another service", RoleKernelNetwork, true, map[string]string{"baton.managed": "true", "baton.role": RoleKernelNetwork, LabelNetworkFor: "db"}, "not service web's"},
		{"kernel network not internal", RoleKernelNetwork, false, own(RoleKernelNetwork), "not internal"},
	} {
		n := network.Inspect{Name: KernelNetwork("web"), Internal: tc.internal, Labels: tc.labels}
		err := checkOwnNetwork(n, tc.role, "web")
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tc.name, err)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.errHas)
		}
	}
}
