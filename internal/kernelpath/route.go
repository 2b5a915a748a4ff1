// Package kernelpath lets the kernel carry a relay-host service's steady
// traffic: nginx keeps naming the relay's loopback address, and while no
// deploy runs a DNAT rule sends new connections for that address straight to
// the serving container, so no userland process copies a byte. During a
// deploy the rule is removed and new connections reach the relay again, which
// switches, drains, bakes and reverts as always; connections the kernel
// already carries keep their translation (conntrack) and finish on the
// container they started on.
//
// The DNAT'd connections leave with the address of the bridge of a network
// only the kernel path uses (the service's kernel network: its gateway,
// which the container reaches on its link, as an internal network gives it
// no route) and keep nginx's own source ports. Both matter on Linux 6.x,
// which derives a connection's TCP timestamp offset from its whole 4-tuple:
// the container closes first and holds TIME_WAIT for every tuple the host
// used, and a SYN on such a tuple carrying an older timestamp than the
// flow before it is dropped by PAWS and retried a second later (nginx's
// connect timeout). Kept ports give each tuple on the wire one original
// tuple, so one offset, rising with time; a remapped port (an SNAT port
// range, MASQUERADE) lets two of nginx's connections, or one of nginx's and
// one of the relay's, meet on one tuple with unrelated offsets. See
// docs/NOTES.md, "The kernel path's loss, explained".
//
// A reboot clears the rules: traffic then goes through the relay, which
// listens on the same address, until baton (status, any deploy) installs
// them again. Nothing that fails here leaves traffic without a path.
package kernelpath

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Route is one service's kernel path.
type Route struct {
	// Service names the rules (their comment), one route per service.
	Service string
	// Listen is the address nginx names and the relay listens on: a
	// loopback address, so the relay serves it again after a reboot.
	Listen netip.AddrPort
	// Target is the serving container's address and port.
	Target netip.AddrPort
	// Source is the address the kernel's connections come from: the
	// bridge's own (the container answers it on its link), on a network
	// no other flow to the container uses; their ports are nginx's own.
	Source netip.Addr
	// Bridge is the Linux bridge of the container's network: the one
	// interface that may route 127/8 (route_localnet), guarded by a drop
	// of 127/8 arriving on it.
	Bridge string
}

// InNamespace reports whether r is the route of a relay for an nginx
// container: no Source and no Bridge. Its one rule goes in that
// container's network namespace (the Table's Runner enters it, see
// NamespaceRunner), catches nginx's connections for the relay's address on
// the service's network and sends them to the app's address on that same
// network. They keep nginx's own source address and ports: no SNAT, no
// bridge, no 127/8, and no other flow to the app (the relay's dials from
// its own address, probes from the host's) shares a source address with
// them, so none shares a 4-tuple either (see the package comment).
func (r Route) InNamespace() bool { return r.Bridge == "" && !r.Source.IsValid() }

// Forwarded reports whether r is the route of a relay that nginx reaches
// from another machine (a host of a rollout, --hosts): its listen address
// is the host's own, not a loopback one. Its DNAT is in nat PREROUTING,
// where nginx's connections arrive; the SNAT gives them the kernel
// network's gateway as for a loopback route (the container, on an internal
// network, has no route back to nginx's machine), and they keep nginx's
// ports (its one address keeps the tuples apart); an ACCEPT in Docker's
// DOCKER-USER lets them past Docker's isolation of internal networks. No
// 127/8 is involved, so no route_localnet and no guards.
func (r Route) Forwarded() bool {
	return !r.InNamespace() && r.Listen.IsValid() && !r.Listen.Addr().IsLoopback()
}

var (
	serviceRE = regexp.MustCompile(`^[a-zA-Z0-9_.:/-]{1,200}$`)
	// Linux interface names: at most 15 bytes, no slash or space.
	bridgeRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)
)

// Validate checks r before any rule is written: every field ends up in an
// iptables argument or a /proc path.
func (r Route) Validate() error {
	if err := checkService(r.Service); err != nil {
		return err
	}
	if !r.Target.IsValid() || !r.Target.Addr().Is4() || r.Target.Addr().IsLoopback() || r.Target.Addr().IsUnspecified() || r.Target.Port() == 0 {
		return fmt.Errorf("kernel path: target %s: want a container's IPv4 address with a port", r.Target)
	}
	if r.InNamespace() {
		switch {
		case !r.Listen.IsValid() || !r.Listen.Addr().Is4() || r.Listen.Addr().IsLoopback() || r.Listen.Addr().IsUnspecified() || r.Listen.Port() == 0:
			return fmt.Errorf("kernel path: relay address %s: want the relay's IPv4 address on the service's network, with a port", r.Listen)
		case r.Target.Addr() == r.Listen.Addr():
			return fmt.Errorf("kernel path: target %s is the relay's own address", r.Target)
		}
		return nil
	}
	switch {
	case r.Forwarded() && (!r.Listen.Addr().Is4() || r.Listen.Addr().IsUnspecified() || r.Listen.Addr().IsMulticast() || r.Listen.Port() == 0):
		return fmt.Errorf("kernel path: listen address %s: want one IPv4 address of the host with a port", r.Listen)
	case r.Forwarded() && r.Listen.Addr() == r.Target.Addr():
		return fmt.Errorf("kernel path: target %s is the relay's own address", r.Target)
	case !r.Forwarded() && (!r.Listen.IsValid() || !r.Listen.Addr().Is4() || !r.Listen.Addr().IsLoopback() || r.Listen.Port() == 0):
		return fmt.Errorf("kernel path: listen address %s: want an IPv4 loopback address with a port", r.Listen)
	case !r.Source.IsValid() || !r.Source.Is4() || r.Source.IsLoopback() || r.Source.IsUnspecified():
		return fmt.Errorf("kernel path: source address %s: want a non-loopback IPv4 address of this host", r.Source)
	case !bridgeRE.MatchString(r.Bridge) || r.Bridge == "all" || r.Bridge == "default" || r.Bridge == "lo" || strings.Trim(r.Bridge, ".") == "":
		// all and default are /proc/sys/net/ipv4/conf's entries for every
		// interface, not one.
		return fmt.Errorf("kernel path: bridge %q: want the container network's interface name", r.Bridge)
	}
	return nil
}

// checkService refuses a service name that could not be a rule's comment
// as is.
func checkService(service string) error {
	if !serviceRE.MatchString(service) {
		return fmt.Errorf("kernel path: service name %q: want 1-200 letters, digits or _.:/-", service)
	}
	return nil
}

// The chains baton owns; everything it adds is in them, so a removal never
// touches anyone else's rules.
const (
	chainDNAT = "BATON-KERNELPATH"      // nat, jumped to from OUTPUT
	chainSNAT = "BATON-KERNELPATH-SNAT" // nat, jumped to from POSTROUTING
	chainRaw  = "BATON-KERNELPATH-RAW"  // raw, jumped to from PREROUTING
	chainPre  = "BATON-KERNELPATH-PRE"  // nat, jumped to from PREROUTING: forwarded routes' DNAT
	chainFwd  = "BATON-KERNELPATH-FWD"  // filter, jumped to from DOCKER-USER: forwarded routes' ACCEPT
)

// dnatChains are the chains a service's DNAT may be in: a loopback route's
// and a forwarded one's.
var dnatChains = []string{chainDNAT, chainPre}

// rule is one iptables rule: its table, chain and match/target arguments.
type rule struct {
	table, chain string
	spec         []string
}

func (r Route) comment() string { return "baton:" + r.Service }

// dnat is the rule that carries new connections past the relay; it is the
// one a deploy removes and adds.
func (r Route) dnat() rule {
	chain := chainDNAT
	if r.Forwarded() {
		// Only for connections arriving from elsewhere: a forwarded
		// DNAT in OUTPUT would also catch this host's own connections
		// to that address, which the relay serves as before.
		chain = chainPre
	}
	return rule{"nat", chain, []string{
		"-d", r.Listen.Addr().String() + "/32", "-p", "tcp", "--dport", fmt.Sprint(r.Listen.Port()),
		"-m", "comment", "--comment", r.comment(),
		"-j", "DNAT", "--to-destination", r.Target.String(),
	}}
}

// snat gives the DNAT'd connections of this service their own source; it
// matches on the original destination, so it follows the DNAT to whichever
// container it names and stays in place across deploys.
func (r Route) snat() rule {
	var src []string
	if !r.Forwarded() {
		src = []string{"-s", "127.0.0.0/8"}
	}
	return rule{"nat", chainSNAT, append(src,
		"-o", r.Bridge, "-p", "tcp",
		"-m", "conntrack", "--ctstate", "DNAT", "--ctorigdst", r.Listen.Addr().String(), "--ctorigdstport", fmt.Sprint(r.Listen.Port()),
		"-m", "comment", "--comment", r.comment(),
		// No port range: the SNAT keeps nginx's port (see the package
		// comment); it remaps one only on a tuple already taken, which
		// on a network of the kernel path's own means never in practice.
		"-j", "SNAT", "--to-source", r.Source.String(),
	)}
}

// accept lets a forwarded route's connections, both ways, past the FORWARD
// chain's rules that Docker adds after DOCKER-USER (an internal network
// takes no packet from outside its subnet). It matches only connections
// the route's DNAT made, by their original destination, so it opens
// nothing else: not the container's other ports, not its address.
func (r Route) accept() rule {
	return rule{"filter", chainFwd, []string{
		"-p", "tcp",
		"-m", "conntrack", "--ctstate", "DNAT", "--ctorigdst", r.Listen.Addr().String(), "--ctorigdstport", fmt.Sprint(r.Listen.Port()),
		"-m", "comment", "--comment", r.comment(),
		"-j", "ACCEPT",
	}}
}

// guardComment starts the guards' comment; the rest is the bridge's
// route_localnet before baton's first route on it, restored when its last
// route goes (Docker sets it to 1 itself with userland-proxy off).
const guardComment = "baton:guard-route_localnet-was-"

// guards drop 127/8 arriving on the bridge: route_localnet lets the kernel
// route such addresses on it, which a container could otherwise use to
// reach the host's loopback services.
func guards(bridge, prior string) []rule {
	c := guardComment + prior
	return []rule{
		{"raw", chainRaw, []string{"-i", bridge, "-s", "127.0.0.0/8", "-m", "comment", "--comment", c, "-j", "DROP"}},
		{"raw", chainRaw, []string{"-i", bridge, "-d", "127.0.0.0/8", "-m", "comment", "--comment", c, "-j", "DROP"}},
	}
}

// jumps are the hooks into baton's chains, first in their built-in chains.
// Each has a second spelling (see spellings), so that moving it back to the
// top never leaves its chain without one.
var jumps = []rule{
	{"nat", "OUTPUT", []string{"-j", chainDNAT}},
	{"nat", "POSTROUTING", []string{"-j", chainSNAT}},
	{"raw", "PREROUTING", []string{"-j", chainRaw}},
	{"nat", "PREROUTING", []string{"-j", chainPre}},
	{"filter", "DOCKER-USER", []string{"-j", chainFwd}},
}

// loopbackJumps are the hooks a loopback route needs, dnatJumps the
// DNAT's alone (all a route in nginx's namespace needs), forwardJumps a
// forwarded route's. DOCKER-USER is Docker's chain, which FORWARD jumps to
// first; a host without it has no Docker isolation to pass either, but
// baton asks for it anyway: a route there would fail on its first packet
// in ways no error says.
var (
	loopbackJumps = jumps[:3]
	dnatJumps     = jumps[:1]
	forwardJumps  = []rule{jumps[3], jumps[1], jumps[4]}
)

// movedComment marks the second spelling of a jump.
const movedComment = "baton-jump"

// spellings are the two texts a jump can have: the plain one (what every
// host had before) and one with movedComment. Both jump to the same chain.
// A jump pushed down by a rule someone else inserted first (Docker does at
// every network it creates) is moved back by inserting the spelling no
// copy below uses at the top and then deleting the other's copies by their
// text: a delete by text takes the first copy, and a copy of the same
// spelling at the top would be that one. Deleting first and inserting after
// leaves a moment with no jump, and for the SNAT's that loses connections:
// nginx's SYN is DNAT'd but leaves with its 127.0.0.1 source, which the
// container cannot answer, and nginx's 1 s connect timeout ends it (seen as
// bursts of 504s at a deploy's start while another suite made networks).
func (j rule) spellings() [2][]string {
	return [2][]string{j.spec, append([]string{"-m", "comment", "--comment", movedComment}, j.spec...)}
}

// isJump reports whether spec is either spelling of j.
func (j rule) isJump(spec []string) bool {
	s := j.spellings()
	return slices.Equal(spec, s[0]) || slices.Equal(spec, s[1])
}
