package kernelpath

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// PickSource returns the address the kernel path's connections to target,
// a container on bridge, come from: the bridge's own IPv4 address on
// target's subnet, the network's gateway, which the container reaches on
// its link (the kernel network is internal: its containers have no route
// to anything else).
func PickSource(bridge string, target netip.Addr) (netip.Addr, error) {
	br, err := net.InterfaceByName(bridge)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("kernel path: bridge %s: %w", bridge, err)
	}
	ps, err := prefixes(br)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, p := range ps {
		if p.Contains(target) && p.Addr() != target {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("kernel path: bridge %s has no address on %s's subnet (it has %v): the container's network has no gateway on this host", bridge, target, ps)
}

// Connections is how many connections the service's DNAT has carried since
// it was last added: the nat table sees the first packet of each.
func (t *Table) Connections(ctx context.Context, service string) (uint64, error) {
	out, err := t.ipt.Run(ctx, "-t", "nat", "-L", chainDNAT, "-n", "-v", "-x")
	if err != nil {
		if exitCode1(err) {
			return 0, nil
		}
		return 0, err
	}
	var n uint64
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "/* baton:"+service+" */") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("kernel path: counters of %s: %q", service, line)
		}
		n += v
	}
	return n, nil
}
