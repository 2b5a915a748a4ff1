package kernelpath

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func validRoute() Route {
	return Route{
		Service: "web",
		Listen:  netip.MustParseAddrPort("127.0.0.1:41234"),
		Target:  netip.MustParseAddrPort("172.18.0.5:8080"),
		Source:  netip.MustParseAddr("172.18.0.1"),
		Bridge:  "br-0123456789ab",
	}
}

// TestRouteValidate: every field becomes an iptables argument or a /proc
// path, so anything but the expected shapes is refused, naming the field.
func TestRouteValidate(t *testing.T) {
	if err := validRoute().Validate(); err != nil {
		t.Fatalf("valid route refused: %v", err)
	}
	if r := forwardedRoute(); !r.Forwarded() || r.Validate() != nil {
		t.Fatalf("valid forwarded route refused: %v", r.Validate())
	}
	for _, tc := range []struct {
		name   string
		change func(*Route)
		errHas string
	}{
		{"service with a space", func(r *Route) { r.Service = "web --to 1.2.3.4" }, "service name"},
		{"empty service", func(r *Route) { r.Service = "" }, "service name"},
		{"listen unspecified", func(r *Route) { r.Listen = netip.MustParseAddrPort("0.0.0.0:80") }, "listen address"},
		{"listen multicast", func(r *Route) { r.Listen = netip.MustParseAddrPort("224.0.0.1:80") }, "listen address"},
		{"forwarded listen without port", func(r *Route) { r.Listen = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 0) }, "listen address"},
		{"forwarded listen is the target", func(r *Route) { r.Listen = netip.MustParseAddrPort("172.18.0.5:80") }, "relay's own address"},
		{"listen without port", func(r *Route) { r.Listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0) }, "listen address"},
		{"listen IPv6", func(r *Route) { r.Listen = netip.MustParseAddrPort("[::1]:80") }, "listen address"},
		{"target loopback", func(r *Route) { r.Target = netip.MustParseAddrPort("127.0.0.2:80") }, "target"},
		{"target unset", func(r *Route) { r.Target = netip.AddrPort{} }, "target"},
		{"source loopback", func(r *Route) { r.Source = netip.MustParseAddr("127.0.0.1") }, "source address"},
		{"source unspecified", func(r *Route) { r.Source = netip.MustParseAddr("0.0.0.0") }, "source address"},
		{"bridge too long", func(r *Route) { r.Bridge = "br-0123456789abc" }, "bridge"},
		{"bridge with slash", func(r *Route) { r.Bridge = "../../x" }, "bridge"},
	} {
		r := validRoute()
		tc.change(&r)
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: %v, want an error about the %s", tc.name, err, tc.errHas)
		}
	}
}

// TestRules: the DNAT names the listen address and the target; the SNAT
// follows the DNAT by the original destination and gives the route's
// source and no port range, so nginx's ports are kept; never MASQUERADE,
// whose remapped ports let unrelated flows meet on one tuple (see the
// package comment).
func TestRules(t *testing.T) {
	r := validRoute()
	d := strings.Join(r.dnat().spec, " ")
	if d != "-d 127.0.0.1/32 -p tcp --dport 41234 -m comment --comment baton:web -j DNAT --to-destination 172.18.0.5:8080" {
		t.Errorf("dnat %q", d)
	}
	s := strings.Join(r.snat().spec, " ")
	for _, want := range []string{"-s 127.0.0.0/8", "-o br-0123456789ab", "--ctstate DNAT --ctorigdst 127.0.0.1 --ctorigdstport 41234", "-j SNAT --to-source 172.18.0.1"} {
		if !strings.Contains(s, want) {
			t.Errorf("snat %q lacks %q", s, want)
		}
	}
	for _, g := range guards(r.Bridge, "0") {
		if g.table != "raw" || !slices.Contains(g.spec, "DROP") || !slices.Contains(g.spec, r.Bridge) {
			t.Errorf("guard %+v", g)
		}
	}
}

func TestSplitRule(t *testing.T) {
	got, err := splitRule(`-A BATON-KERNELPATH-RAW -i br0 -s 127.0.0.0/8 -m comment --comment "baton:route_localnet guard" -j DROP`)
	if err != nil {
		t.Fatal(err)
	}
	if commentOf(got) != "baton:route_localnet guard" || got[len(got)-1] != "DROP" {
		t.Errorf("split %q", got)
	}
	if _, err := splitRule(`-A X --comment "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
	if d := toDestination([]string{"-j", "DNAT", "--to-destination", "10.0.0.2:80"}); d != "10.0.0.2:80" {
		t.Errorf("toDestination %q", d)
	}
}
