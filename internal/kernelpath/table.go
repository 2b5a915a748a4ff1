package kernelpath

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Runner runs iptables with args and returns its combined output.
type Runner interface {
	Run(ctx context.Context, args ...string) ([]byte, error)
}

// ExecRunner runs the iptables binary found on PATH (or Path), with -w so it
// waits for the xtables lock Docker also takes.
type ExecRunner struct{ Path string }

func (e ExecRunner) Run(ctx context.Context, args ...string) ([]byte, error) {
	bin := e.Path
	if bin == "" {
		bin = "iptables"
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"-w", "5"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // nothing of baton's environment
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Table installs and removes routes. Its methods are safe to call again
// after a crash at any point: each first looks at what is there.
type Table struct {
	ipt Runner
	// procSys is /proc/sys, for route_localnet (a field for tests).
	procSys string
	mu      sync.Mutex
}

// NewTable returns a Table that runs iptables through ipt.
func NewTable(ipt Runner) *Table { return &Table{ipt: ipt, procSys: "/proc/sys"} }

// Route sends new connections for r.Listen to r.Target, replacing any
// route the service had. Connections already open keep their path.
func (t *Table) Route(ctx context.Context, r Route) error {
	if err := r.Validate(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.setup(ctx, r.Bridge); err != nil {
		return err
	}
	if err := t.ensure(ctx, r.snat()); err != nil {
		return err
	}
	// Add the new DNAT before removing the old one: a connection opened
	// in between takes one or the other, never neither (the relay would
	// serve it too, but nothing needs it to).
	if err := t.ensure(ctx, r.dnat()); err != nil {
		return err
	}
	// iptables -S prints rules with the matches it implies (-m tcp), so
	// the old ones are told by their destination, not by the whole spec.
	return t.deleteMatching(ctx, "nat", chainDNAT, r.comment(), func(spec []string) bool { return toDestination(spec) != r.Target.String() })
}

// Bypass removes the service's DNAT: from now on new connections reach the
// relay. Connections the kernel already carries keep going to their
// container. It is not an error if there was none.
func (t *Table) Bypass(ctx context.Context, service string) error {
	if !serviceRE.MatchString(service) {
		return fmt.Errorf("kernel path: service name %q: want 1-200 letters, digits or _.:/-", service)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deleteMatching(ctx, "nat", chainDNAT, "baton:"+service, nil)
}

// Remove takes the service's kernel path away entirely (DNAT and SNAT).
func (t *Table) Remove(ctx context.Context, service string) error {
	if err := t.Bypass(ctx, service); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deleteMatching(ctx, "nat", chainSNAT, "baton:"+service, nil)
}

// Target says where the service's DNAT sends new connections now, if it has
// one: "" when they go to the relay.
func (t *Table) Target(ctx context.Context, service string) (string, error) {
	rules, err := t.list(ctx, "nat", chainDNAT)
	if err != nil {
		return "", err
	}
	for _, spec := range rules {
		if commentOf(spec) == "baton:"+service {
			return toDestination(spec), nil
		}
	}
	return "", nil
}

func toDestination(spec []string) string {
	if i := slices.Index(spec, "--to-destination"); i >= 0 && i+1 < len(spec) {
		return spec[i+1]
	}
	return ""
}

// setup makes baton's chains, the jumps to them, the bridge's guards and
// its route_localnet, in that order: the guard is in place before the
// bridge may route 127/8.
func (t *Table) setup(ctx context.Context, bridge string) error {
	for _, j := range jumps {
		if _, err := t.ipt.Run(ctx, "-t", j.table, "-N", j.spec[1]); err != nil && !isExists(err) {
			return err
		}
		if _, err := t.ipt.Run(ctx, append([]string{"-t", j.table, "-C", j.chain}, j.spec...)...); err != nil {
			if _, err := t.ipt.Run(ctx, append([]string{"-t", j.table, "-I", j.chain, "1"}, j.spec...)...); err != nil {
				return err
			}
		}
	}
	for _, g := range guards(bridge) {
		if err := t.ensure(ctx, g); err != nil {
			return err
		}
	}
	path := filepath.Join(t.procSys, "net", "ipv4", "conf", bridge, "route_localnet")
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("kernel path: route_localnet on %s: %w", bridge, err)
	}
	return nil
}

// ensure appends r unless it is there.
func (t *Table) ensure(ctx context.Context, r rule) error {
	if _, err := t.ipt.Run(ctx, append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...); err == nil {
		return nil
	}
	_, err := t.ipt.Run(ctx, append([]string{"-t", r.table, "-A", r.chain}, r.spec...)...)
	return err
}

// deleteMatching deletes the rules of chain with the comment for which keep
// (if given) says false.
func (t *Table) deleteMatching(ctx context.Context, table, chain, comment string, del func([]string) bool) error {
	rules, err := t.list(ctx, table, chain)
	if err != nil {
		return err
	}
	var errs []error
	for _, spec := range rules {
		if commentOf(spec) != comment || (del != nil && !del(spec)) {
			continue
		}
		if _, err := t.ipt.Run(ctx, append([]string{"-t", table, "-D", chain}, spec...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// list returns chain's rules as iptables -S prints them, without "-A
// CHAIN"; a chain that does not exist has none.
func (t *Table) list(ctx context.Context, table, chain string) ([][]string, error) {
	out, err := t.ipt.Run(ctx, "-t", table, "-S", chain)
	if err != nil {
		if isNoChain(err) {
			return nil, nil
		}
		return nil, err
	}
	var rules [][]string
	for _, line := range strings.Split(string(out), "\n") {
		f, err := splitRule(line)
		if err != nil {
			return nil, fmt.Errorf("kernel path: iptables -t %s -S %s: %w", table, chain, err)
		}
		if len(f) >= 2 && f[0] == "-A" && f[1] == chain {
			rules = append(rules, f[2:])
		}
	}
	return rules, nil
}

// splitRule splits an iptables -S line: words, with "double quoted" ones
// (comments) unquoted.
func splitRule(line string) ([]string, error) {
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] != '"' {
			i := strings.IndexByte(line, ' ')
			if i < 0 {
				i = len(line)
			}
			out = append(out, line[:i])
			line = line[i:]
			continue
		}
		end := strings.IndexByte(line[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("unterminated quote in %q", line)
		}
		out = append(out, line[1:1+end])
		line = line[2+end:]
	}
	return out, nil
}

func commentOf(spec []string) string {
	if i := slices.Index(spec, "--comment"); i >= 0 && i+1 < len(spec) {
		return spec[i+1]
	}
	return ""
}

func isExists(err error) bool {
	return err != nil && strings.Contains(err.Error(), "already exists")
}

func isNoChain(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "No chain/target/match by that name") || strings.Contains(err.Error(), "does not exist"))
}
