package kernelpath

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// PickSource returns the address the kernel path's connections to a
// container on bridge come from: docker0's (the engine's default bridge,
// there as long as the engine runs), else that of the interface with the
// default route; never one on bridge's own network, whose gateway the
// relay's dials use.
func PickSource(bridge string) (netip.Addr, error) {
	var onBridge []netip.Prefix
	if br, err := net.InterfaceByName(bridge); err == nil {
		if onBridge, err = prefixes(br); err != nil {
			return netip.Addr{}, err
		}
	}
	names := []string{"docker0"}
	if dflt, err := defaultRouteInterface(); err == nil && dflt != "" {
		names = append(names, dflt)
	}
	for _, name := range names {
		if name == bridge {
			continue
		}
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			continue
		}
		ps, err := prefixes(ifc)
		if err != nil {
			return netip.Addr{}, err
		}
		for _, p := range ps {
			a := p.Addr()
			if !a.IsLoopback() && !slices.ContainsFunc(onBridge, func(b netip.Prefix) bool { return b.Contains(a) }) {
				return a, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("kernel path: no address for the kernel's connections to %s: this host has neither docker0 nor a default route with an IPv4 address outside that network", bridge)
}

// defaultRouteInterface reads this network namespace's IPv4 default route.
func defaultRouteInterface() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" {
			return f[0], nil
		}
	}
	return "", sc.Err()
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
