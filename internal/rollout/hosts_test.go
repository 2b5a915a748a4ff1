package rollout

import (
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/deploy"
)

func TestParseHosts(t *testing.T) {
	// The README's example file.
	in := "# the file \"hosts\"\napp1 relay-address=10.0.0.11\napp2 relay-address=10.0.0.12\n\nlocal relay-address=10.0.0.10 docker-host=unix:///var/run/docker.sock  # here\n"
	hosts, err := ParseHosts(strings.NewReader(in), "hosts")
	if err != nil {
		t.Fatal(err)
	}
	want := []Host{{Name: "app1", RelayAddress: "10.0.0.11"}, {Name: "app2", RelayAddress: "10.0.0.12"}, {Name: "local", RelayAddress: "10.0.0.10", DockerHost: "unix:///var/run/docker.sock"}}
	if len(hosts) != len(want) {
		t.Fatalf("got %+v", hosts)
	}
	for i := range want {
		if hosts[i] != want[i] {
			t.Errorf("host %d: %+v, want %+v", i, hosts[i], want[i])
		}
	}
	for _, c := range []struct{ in, err string }{
		{"app1 relay-address=web1", `hosts:1: relay-address "web1" is not an IP address`},
		{"app1 docker-host=ssh://me@web1", `hosts:1: docker-host "ssh://me@web1": want a unix:// or tcp:// URL`},
		{"\n../x", `hosts:2: host name "../x"`},
		{"app1 port=80", `hosts:1: "port=80": want relay-address=IP or docker-host=URL`},
	} {
		_, err := ParseHosts(strings.NewReader(c.in), "hosts")
		if err == nil || !strings.Contains(err.Error(), c.err) || deploy.ExitCode(err) != 2 {
			t.Errorf("%q: err %v, want a usage error containing %q", c.in, err, c.err)
		}
	}
}

func TestApplyRelayAddresses(t *testing.T) {
	hosts := []Host{{Name: "a"}, {Name: "b"}}
	if err := ApplyRelayAddresses(hosts, "a=10.0.0.1, b=10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if hosts[0].RelayAddress != "10.0.0.1" || hosts[1].RelayAddress != "10.0.0.2" {
		t.Fatalf("got %+v", hosts)
	}
	for _, bad := range []string{"10.0.0.1", "c=10.0.0.3", "a=web1"} {
		if err := ApplyRelayAddresses(hosts, bad); err == nil || deploy.ExitCode(err) != 2 {
			t.Errorf("%q: err %v, want a usage error", bad, err)
		}
	}
}
