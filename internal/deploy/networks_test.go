package deploy

import (
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"

	"github.com/baton-sh/baton/dockerctl"
)

func TestPlanNetworks(t *testing.T) {
	att := func(name string, exclusive bool, aliases ...string) dockerctl.NetworkAttachment {
		return dockerctl.NetworkAttachment{Name: name, Endpoint: &network.EndpointSettings{Aliases: aliases}, Exclusive: exclusive}
	}
	spec := func(mode string, ports nat.PortMap, nets ...dockerctl.NetworkAttachment) *dockerctl.CloneSpec {
		return &dockerctl.CloneSpec{HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(mode), PortBindings: ports}, Networks: nets}
	}
	fixed := nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "8080"}}}
	random := nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}}
	names := func(as []dockerctl.NetworkAttachment) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.Name)
		}
		return out
	}
	t.Run("fixed host port warms up isolated", func(t *testing.T) {
		p := planNetworks(spec("shop", fixed, att("shop", false, "web"), att("db", false), att("baton", false)), "baton", "web")
		if !p.Isolated || p.NetworkMode != "baton" || len(p.BeforeStart) != 0 {
			t.Fatalf("%+v", p)
		}
		if got := names(p.AtHandover); !slices.Equal(got, []string{"shop", "db"}) {
			t.Fatalf("handover %v (baton's own network must not be re-added)", got)
		}
	})
	t.Run("no fixed port joins its networks before start", func(t *testing.T) {
		p := planNetworks(spec("shop", random, att("shop", false, "web"), att("db", false)), "baton", "web")
		if p.Isolated || p.NetworkMode != "shop" || p.AtCreate["shop"] == nil {
			t.Fatalf("%+v", p)
		}
		if got := names(p.BeforeStart); !slices.Equal(got, []string{"baton", "db"}) {
			t.Fatalf("before start %v", got)
		}
	})
	t.Run("static IP network waits for the handover", func(t *testing.T) {
		p := planNetworks(spec("shop", nil, att("shop", true), att("db", false)), "baton", "web")
		if p.NetworkMode != "baton" || !slices.Equal(names(p.AtHandover), []string{"shop"}) || !slices.Equal(names(p.BeforeStart), []string{"db"}) {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("service name becomes an alias on user networks only", func(t *testing.T) {
		p := planNetworks(spec("shop", nil, att("shop", false), att("bridge", false)), "baton", "web")
		if !slices.Contains(p.AtCreate["shop"].Aliases, "web") {
			t.Fatalf("shop aliases %v", p.AtCreate["shop"].Aliases)
		}
		for _, a := range p.BeforeStart {
			if a.Name == "bridge" && len(a.Endpoint.Aliases) != 0 {
				t.Fatalf("default bridge got aliases %v", a.Endpoint.Aliases)
			}
		}
	})
	t.Run("network mode none", func(t *testing.T) {
		p := planNetworks(spec("none", nil), "baton", "web")
		if p.UseBaton || p.NetworkMode != "none" {
			t.Fatalf("%+v", p)
		}
	})
}
