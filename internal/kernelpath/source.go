package kernelpath

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PickSource returns the address the kernel path's connections to target,
// a container on bridge, come from: the bridge's own IPv4 address on
// target's subnet, the network's gateway, which the container reaches on
// its link (a service's network is internal: its containers have no route
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

// SourcePorts returns the ports the kernel path's connections leave with:
// those from 1024 up to just below this network namespace's ephemeral range
// (net.ipv4.ip_local_port_range), where the host's own dials (the relay's,
// baton's probes) take theirs.
func SourcePorts() (PortRange, error) { return sourcePorts("/proc/sys") }

func sourcePorts(procSys string) (PortRange, error) {
	b, err := os.ReadFile(filepath.Join(procSys, "net", "ipv4", "ip_local_port_range"))
	if err != nil {
		return PortRange{}, fmt.Errorf("kernel path: the ephemeral port range: %w", err)
	}
	f := strings.Fields(string(b))
	low := 0
	if len(f) == 2 {
		low, err = strconv.Atoi(f[0])
	}
	if len(f) != 2 || err != nil {
		return PortRange{}, fmt.Errorf("kernel path: ip_local_port_range %q: want two numbers", strings.TrimSpace(string(b)))
	}
	// At least 4,096 ports, or the kernel's connections would run short of
	// tuples long before the host's own do.
	if low-1 < minSourcePort+4095 {
		return PortRange{}, fmt.Errorf("kernel path: the ephemeral ports start at %d (net.ipv4.ip_local_port_range), leaving fewer than 4096 ports below them for the kernel path's connections; raise its start (the default is 32768) or drop --kernel-path", low)
	}
	return PortRange{Low: minSourcePort, High: uint16(low - 1)}, nil
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
