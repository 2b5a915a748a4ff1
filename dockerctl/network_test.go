package dockerctl

import "testing"

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
