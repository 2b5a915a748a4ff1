package traffic

import (
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// addrOn tells "not on that network (yet)" from a bad address, and takes
// an inspect without network settings without a panic.
func TestAddrOn(t *testing.T) {
	on := func(ip string) container.InspectResponse {
		c := container.InspectResponse{NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"svc": {IPAddress: ip}}}}
		c.ContainerJSONBase = &container.ContainerJSONBase{Name: "/web"}
		return c
	}
	for _, tc := range []struct {
		name   string
		c      container.InspectResponse
		net    string
		want   string
		ok     bool
		hasErr bool
	}{
		{"on it", on("172.20.0.5"), "svc", "172.20.0.5", true, false},
		{"another network", on("172.20.0.5"), "other", "invalid IP", false, false},
		{"no address yet", on(""), "svc", "invalid IP", false, false},
		{"no network settings", container.InspectResponse{}, "svc", "invalid IP", false, false},
		{"a bad address", on("172.20.0.999"), "svc", "invalid IP", false, true},
	} {
		a, ok, err := addrOn(tc.c, tc.net)
		if a.String() != tc.want || ok != tc.ok || (err != nil) != tc.hasErr {
			t.Errorf("%s: addrOn = %s, %v, %v; want %s, %v, error %v", tc.name, a, ok, err, tc.want, tc.ok, tc.hasErr)
		}
	}
}
