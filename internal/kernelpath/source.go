package kernelpath

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/baton-sh/baton/internal/procnet"
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
	var out []byte
	for _, c := range dnatChains {
		o, err := t.ipt.Run(ctx, "-t", "nat", "-L", c, "-n", "-v", "-x")
		if err != nil && !exitCode1(err) {
			return 0, err
		}
		out = append(out, o...)
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

// EstablishedFrom counts the TCP connections in state ESTABLISHED on local
// port from address from, in the network namespace of process pid, read
// from <proc>/<pid>/net/tcp and tcp6: the connections the kernel path
// carries to a container (they come from its source address). ok is false
// when the tables cannot be read (the container is gone, or not root on
// its host).
func EstablishedFrom(proc string, pid, port int, from netip.Addr) (n int, ok bool) {
	if pid <= 0 || port <= 0 || port > 65535 || !from.Is4() {
		return 0, false
	}
	return procnet.CountEstablished(proc, pid, func(c procnet.Conn) bool {
		return c.Local.Port() == uint16(port) && c.Remote.Addr() == from
	})
}

// Empty reports whether nothing of baton's is left in this firewall: none
// of its chains exists.
func (t *Table) Empty(ctx context.Context) (bool, error) {
	for _, j := range jumps {
		if _, err := t.ipt.Run(ctx, "-t", j.table, "-S", j.spec[1]); exitCode1(err) {
			continue
		} else if err != nil {
			return false, err
		}
		return false, nil
	}
	return true, nil
}
