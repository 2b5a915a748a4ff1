package kernelpath

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func nsRoute() Route {
	return Route{Service: "web", Listen: netip.MustParseAddrPort("172.20.0.3:8080"), Target: netip.MustParseAddrPort("172.20.0.5:8080")}
}

// A route for an nginx container names the relay's address on the service's
// network (no loopback), the app's there, and neither a source nor a
// bridge; Validate takes nothing else for it.
func TestValidateNamespaceRoute(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Route)
		want string // "" = valid
	}{
		{"the relay's address to the app's (positive control)", func(*Route) {}, ""},
		{"a loopback listen address", func(r *Route) { r.Listen = netip.MustParseAddrPort("127.0.0.1:8080") }, "relay address"},
		{"an unspecified listen address", func(r *Route) { r.Listen = netip.MustParseAddrPort("0.0.0.0:8080") }, "relay address"},
		{"no listen port", func(r *Route) { r.Listen = netip.AddrPortFrom(r.Listen.Addr(), 0) }, "relay address"},
		{"an IPv6 target", func(r *Route) { r.Target = netip.MustParseAddrPort("[fd00::5]:8080") }, "target"},
		{"a loopback target", func(r *Route) { r.Target = netip.MustParseAddrPort("127.0.0.5:8080") }, "target"},
		{"the relay as its own target", func(r *Route) { r.Target = netip.AddrPortFrom(r.Listen.Addr(), 9000) }, "the relay's own address"},
		{"a bad service name", func(r *Route) { r.Service = "web; rm -rf /" }, "service name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := nsRoute()
			tc.edit(&r)
			if !r.InNamespace() {
				t.Fatalf("%+v is not a namespace route", r)
			}
			err := r.Validate()
			if tc.want == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate: %v, want an error about %q", err, tc.want)
			}
		})
	}
	// With a source it is the host's kind: a loopback route, or with
	// another listen address a forwarded one, whose checks (a source on
	// the bridge, a valid bridge) apply; the namespace kind's are not a
	// way around those.
	r := nsRoute()
	r.Source, r.Bridge = netip.MustParseAddr("172.21.0.1"), "br-0123456789ab"
	if r.InNamespace() || !r.Forwarded() || r.Validate() != nil {
		t.Fatalf("a forwarded route: InNamespace %v, Forwarded %v, Validate %v", r.InNamespace(), r.Forwarded(), r.Validate())
	}
	r.Bridge = "../x"
	if r.Validate() == nil {
		t.Fatalf("a forwarded route with a bad bridge passed: %+v", r)
	}
}

// In nginx's namespace a route is one DNAT in baton's chain, jumped to
// from nat OUTPUT: no SNAT, no raw guards, no route_localnet. Retargeting
// keeps one rule; Remove leaves nothing of baton's.
func TestTableNamespaceRoute(t *testing.T) {
	ctx := context.Background()
	f := newFakeIPT()
	// Docker's embedded DNS rules, which baton's must never touch.
	f.chains["nat/OUTPUT"] = []string{"-d 127.0.0.11/32 -j DOCKER_OUTPUT"}
	tbl, rl := fakeTable(t, f, "br-0123456789ab", "0")
	tbl.checkLive = func(Route) error { t.Fatal("checkLive called for a namespace route"); return nil }
	r := nsRoute()
	if err := tbl.Route(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Target = netip.MustParseAddrPort("172.20.0.6:8080")
	if err := tbl.Route(ctx, r); err != nil {
		t.Fatal(err)
	}
	got := f.serviceRules("nat", chainDNAT, "web")
	if len(got) != 1 || !strings.Contains(got[0], "-d 172.20.0.3/32") || !strings.Contains(got[0], "--to-destination 172.20.0.6:8080") {
		t.Fatalf("DNAT rules %q, want one from 172.20.0.3 to 172.20.0.6:8080", got)
	}
	if out := f.chains["nat/OUTPUT"]; len(out) != 2 || out[0] != "-j "+chainDNAT {
		t.Fatalf("nat OUTPUT %q, want baton's jump first and Docker's rule kept", out)
	}
	for _, c := range []string{"nat/" + chainSNAT, "raw/" + chainRaw} {
		if _, ok := f.chains[c]; ok {
			t.Errorf("chain %s made for a namespace route", c)
		}
	}
	if len(f.chains["nat/POSTROUTING"]) != 0 || len(f.chains["raw/PREROUTING"]) != 0 || readTrim(t, rl) != "0" {
		t.Errorf("a namespace route touched POSTROUTING %q, raw PREROUTING %q or route_localnet %s", f.chains["nat/POSTROUTING"], f.chains["raw/PREROUTING"], readTrim(t, rl))
	}
	if target, err := tbl.Target(ctx, "web"); err != nil || target != "172.20.0.6:8080" {
		t.Fatalf("Target %q %v", target, err)
	}
	if err := tbl.Remove(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.chains["nat/"+chainDNAT]; ok || len(f.chains["nat/OUTPUT"]) != 1 {
		t.Fatalf("after Remove: chain left %v, nat OUTPUT %q (want Docker's rule alone)", ok, f.chains["nat/OUTPUT"])
	}
}

// SameNamespace holds a namespace to the engine's file for it: another
// namespace, no file, or this process's own are refused. (The positive
// control, a container's own namespace, is TestKernelPathNginxContainer's:
// every route it checks passed here.)
func TestSameNamespaceRefuses(t *testing.T) {
	self, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Skip("no /proc/self/ns/net here")
	}
	defer self.Close()
	for _, tc := range []struct{ key, want string }{
		{"", "names no network namespace file"},
		{"relative/key", "names no network namespace file"},
		{"/proc/self/ns/mnt", "is not the container's network namespace"},
		{"/nonexistent/netns/abc", "no such file"},
		{"/proc/self/ns/net", "this host's own network namespace"},
	} {
		if err := SameNamespace(self, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SameNamespace(self, %q) = %v, want %q", tc.key, err, tc.want)
		}
	}
}
