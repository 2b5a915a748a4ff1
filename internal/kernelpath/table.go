package kernelpath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Runner runs iptables with args and returns what it printed on stdout. A
// failure's error has an ExitCode method (as *exec.ExitError has): iptables
// exits 1 for "no such rule / chain" and "already exists", other codes for
// real trouble (4: the xtables lock was not had in time).
type Runner interface {
	Run(ctx context.Context, args ...string) ([]byte, error)
}

// ExecRunner runs the iptables binary found on PATH (or Path), with -w so it
// waits for the xtables lock Docker also takes.
type ExecRunner struct{ Path string }

func (e ExecRunner) Run(ctx context.Context, args ...string) ([]byte, error) {
	bin := e.Path
	if bin == "" {
		var err error
		if bin, err = lookFixed("iptables"); err != nil {
			return nil, err
		}
	}
	return runIptables(exec.CommandContext(ctx, bin, append([]string{"-w", "5"}, args...)...), args)
}

// NamespaceRunner runs iptables in the network namespace NS, an open
// /proc/PID/ns/net of an nginx container, through nsenter, which enters it
// by that descriptor: a process that exited meanwhile and a PID taken by
// another process cannot send the rules anywhere else. The caller keeps NS
// open while the runner is used and closes it after.
type NamespaceRunner struct {
	NS *os.File
}

// OpenNamespace opens the network namespace of process pid.
func OpenNamespace(pid int) (*os.File, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("kernel path: no process %d to take a network namespace from", pid)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("kernel path: network namespace of process %d: %w", pid, err)
	}
	return f, nil
}

// SameNamespace checks that ns, a network namespace held open, is the one
// at sandboxKey (the file Docker keeps for a container's network
// namespace) and not this process's own: a rule meant for an nginx
// container must land in no other namespace, the host's least of all.
func SameNamespace(ns *os.File, sandboxKey string) error {
	var held, want, self unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &held); err != nil {
		return fmt.Errorf("kernel path: network namespace %s: %w", ns.Name(), err)
	}
	if sandboxKey == "" || !filepath.IsAbs(sandboxKey) {
		return fmt.Errorf("kernel path: the engine names no network namespace file (sandbox key %q) to check %s against", sandboxKey, ns.Name())
	}
	if err := unix.Stat(sandboxKey, &want); err != nil {
		return fmt.Errorf("kernel path: network namespace file %s: %w", sandboxKey, err)
	}
	if held.Dev != want.Dev || held.Ino != want.Ino {
		return fmt.Errorf("kernel path: %s is not the container's network namespace %s", ns.Name(), sandboxKey)
	}
	if err := unix.Stat("/proc/self/ns/net", &self); err == nil && self.Dev == held.Dev && self.Ino == held.Ino {
		return fmt.Errorf("kernel path: %s is this host's own network namespace (nginx on the host network?): the rule belongs in nginx's own", ns.Name())
	}
	return nil
}

func (n NamespaceRunner) Run(ctx context.Context, args ...string) ([]byte, error) {
	if n.NS == nil {
		return nil, errors.New("kernel path: no network namespace to run iptables in")
	}
	bin, err := lookFixed("nsenter")
	if err != nil {
		return nil, err
	}
	// fd 3 in nsenter is NS (ExtraFiles' first); /proc/self is nsenter.
	cmd := exec.CommandContext(ctx, bin, append([]string{"--net=/proc/self/fd/3", "--", "iptables", "-w", "5"}, args...)...)
	cmd.ExtraFiles = []*os.File{n.NS}
	return runIptables(cmd, args)
}

// fixedPath is the PATH baton's iptables and nsenter are found in, and run
// with: nothing of baton's own environment chooses what runs as root.
const fixedPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// lookFixed finds program name in fixedPath.
func lookFixed(name string) (string, error) {
	for _, dir := range filepath.SplitList(fixedPath) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("kernel path: %s not found in %s (install it: util-linux for nsenter, iptables for iptables)", name, fixedPath)
}

// runIptables runs cmd, an iptables with args, with nothing of baton's
// environment, and returns its stdout.
func runIptables(cmd *exec.Cmd, args []string) ([]byte, error) {
	cmd.Env = []string{"PATH=" + fixedPath} // nothing of baton's environment
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // warnings stay out of what -S parsing reads
	out, err := cmd.Output()
	if err != nil {
		return out, &runError{args: args, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return out, nil
}

type runError struct {
	args   []string
	err    error
	stderr string
}

func (e *runError) Error() string {
	return fmt.Sprintf("iptables %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}
func (e *runError) Unwrap() error { return e.err }

// ExitCode is iptables' exit status, -1 if it did not exit.
func (e *runError) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(e.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// exitCode1 reports whether err is iptables saying "no" (exit status 1:
// no such rule or chain, or it already exists), not a failure to run.
func exitCode1(err error) bool {
	var ec interface{ ExitCode() int }
	return errors.As(err, &ec) && ec.ExitCode() == 1
}

// Table installs and removes routes. Its methods are safe to call again
// after a crash at any point: each first looks at what is there. They take
// a lock shared by every baton process on the host, so a status repairing
// one service cannot interleave with a deploy changing another's rules.
type Table struct {
	ipt Runner
	// procSys is /proc/sys (for route_localnet), lockPath the host-wide
	// lock, checkLive the check of a route against this network
	// namespace's interfaces: fields so that tests can run without them.
	procSys   string
	lockPath  string
	checkLive func(Route) error
	// openFlows counts open connections by original destination (see
	// openFlows); nil waits for none.
	openFlows func(dests []string) (int, bool)
	mu        sync.Mutex
}

// NewTable returns a Table that runs iptables through ipt.
func NewTable(ipt Runner) *Table {
	return &Table{ipt: ipt, procSys: "/proc/sys", lockPath: "/run/baton/kernelpath.lock", checkLive: checkLive, openFlows: openFlows}
}

// lock takes the process's and the host's lock, waiting at most as long as
// ctx allows; the returned func drops both. The lock file lives in a
// directory only its owner (root) may write: in a world-writable one such
// as /run/lock, any local user could create or hold it first and stop
// every deploy.
func (t *Table) lock(ctx context.Context) (func(), error) {
	t.mu.Lock()
	if t.lockPath == "" {
		return t.mu.Unlock, nil
	}
	fail := func(err error) (func(), error) {
		t.mu.Unlock()
		return nil, fmt.Errorf("kernel path: lock %s: %w", t.lockPath, err)
	}
	dir := filepath.Dir(t.lockPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fail(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return fail(fmt.Errorf("%s must be a directory of this user's (uid %d) that no one else may write (it is uid %d, mode %o)", dir, os.Geteuid(), st.Uid, st.Mode&0o7777))
	}
	f, err := os.OpenFile(t.lockPath, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fail(err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			_ = f.Close()
			return fail(err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return fail(fmt.Errorf("another baton holds it: %w", ctx.Err()))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return func() {
		_ = f.Close() // drops the flock
		t.mu.Unlock()
	}, nil
}

// Route sends new connections for r.Listen to r.Target, replacing any
// route the service had. Connections already open keep their path. The
// new DNAT goes in first in the chain before the old one is deleted, so a
// crash in between leaves the new target in effect, never the old alone.
func (t *Table) Route(ctx context.Context, r Route) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if !r.InNamespace() {
		if err := t.checkLive(r); err != nil {
			return err
		}
	}
	unlock, err := t.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	switch {
	case r.InNamespace():
		// nginx's own namespace: the DNAT alone (see Route.InNamespace).
		if err := t.setupChains(ctx, dnatJumps); err != nil {
			return err
		}
	case r.Forwarded():
		if err := t.setupChains(ctx, forwardJumps); err != nil {
			return err
		}
		// The ACCEPT before the SNAT and both before the DNAT: a
		// connection the DNAT sends must find its way open.
		if err := t.ensure(ctx, r.accept()); err != nil {
			return err
		}
		if err := t.dropStale(ctx, r.accept(), acceptKey); err != nil {
			return err
		}
		if err := t.ensure(ctx, r.snat()); err != nil {
			return err
		}
		if err := t.dropStaleSNAT(ctx, r); err != nil {
			return err
		}
	default:
		if err := t.setup(ctx, r.Bridge); err != nil {
			return err
		}
		if err := t.ensure(ctx, r.snat()); err != nil {
			return err
		}
		if err := t.dropStaleSNAT(ctx, r); err != nil {
			return err
		}
	}
	d := r.dnat()
	rules, err := t.list(ctx, "nat", d.chain)
	if err != nil {
		return err
	}
	for _, s := range rules {
		if commentOf(s) != r.comment() && argAfter(s, "-d") == r.Listen.Addr().String()+"/32" && argAfter(s, "--dport") == fmt.Sprint(r.Listen.Port()) {
			return fmt.Errorf("kernel path: %s is %s's already; each service needs its own listen address", r.Listen, strings.TrimPrefix(commentOf(s), "baton:"))
		}
	}
	if i := slices.IndexFunc(rules, func(s []string) bool { return commentOf(s) == r.comment() }); i < 0 || dnatKey(rules[i]) != dnatKey(d.spec) {
		if _, err := t.ipt.Run(ctx, append([]string{"-t", d.table, "-I", d.chain, "1"}, d.spec...)...); err != nil {
			return err
		}
		if rules, err = t.list(ctx, "nat", d.chain); err != nil {
			return err
		}
	}
	// A route of the other kind (the relay moved between a loopback and
	// a host address) leaves its DNAT in the other chain: it goes now.
	for _, c := range dnatChains {
		if c != d.chain {
			if err := t.deleteComment(ctx, "nat", c, r.comment()); err != nil {
				return err
			}
		}
	}
	if !r.Forwarded() {
		if err := t.deleteComment(ctx, "filter", chainFwd, r.comment()); err != nil {
			return err
		}
	}
	// Keep the service's first rule (the one in effect, now the right
	// one); delete the rest, last first so the numbers hold.
	var del []int
	first := true
	for i, s := range rules {
		if commentOf(s) != r.comment() {
			continue
		}
		if first {
			first = false
			continue
		}
		del = append(del, i+1)
	}
	return t.deleteNumbers(ctx, "nat", d.chain, del)
}

// dropStale deletes the rules of want's chain with want's comment whose key
// is not want's: what a route of the same service left with another
// address or port.
func (t *Table) dropStale(ctx context.Context, want rule, key func([]string) string) error {
	rules, err := t.list(ctx, want.table, want.chain)
	if err != nil {
		return err
	}
	var del []int
	for i, spec := range rules {
		if commentOf(spec) == commentOf(want.spec) && key(spec) != key(want.spec) {
			del = append(del, i+1)
		}
	}
	return t.deleteNumbers(ctx, want.table, want.chain, del)
}

// acceptKey is what makes an ACCEPT rule the one a route wants: the
// original destination it lets through.
func acceptKey(spec []string) string {
	return strings.TrimSuffix(argAfter(spec, "--ctorigdst"), "/32") + " " + argAfter(spec, "--ctorigdstport")
}

// dropStaleSNAT deletes the service's SNAT rules other than r's (a relay
// recreated on another address, a kernel network recreated on another
// bridge, the rules of an earlier design), then releases a bridge no route uses any
// more. Flows in flight under an old rule keep their translation.
func (t *Table) dropStaleSNAT(ctx context.Context, r Route) error {
	snats, err := t.list(ctx, "nat", chainSNAT)
	if err != nil {
		return err
	}
	want := r.snat().spec
	var del []int
	var bridges []string
	for i, spec := range snats {
		if commentOf(spec) != r.comment() || snatKey(spec) == snatKey(want) {
			continue
		}
		del = append(del, i+1)
		// The route's own bridge too: a loopback route replaced by a
		// forwarded one there leaves the bridge no loopback route.
		if b := argAfter(spec, "-o"); !slices.Contains(bridges, b) {
			bridges = append(bridges, b)
		}
	}
	if len(del) == 0 {
		return nil
	}
	if err := t.deleteNumbers(ctx, "nat", chainSNAT, del); err != nil {
		return err
	}
	return t.releaseUnused(ctx, bridges)
}

// dnatKey is what makes a DNAT rule the one a route wants: the address and
// port it catches and where it sends them, compared by value.
func dnatKey(spec []string) string {
	return strings.Join([]string{strings.TrimSuffix(argAfter(spec, "-d"), "/32"), argAfter(spec, "--dport"), toDestination(spec)}, " ")
}

// snatKey is what makes an SNAT rule the one a route wants: its bridge,
// the original destination it follows and the source it gives, compared by
// value, so iptables' way of printing them back does not matter.
func snatKey(spec []string) string {
	return strings.Join([]string{argAfter(spec, "-s"), argAfter(spec, "-o"), strings.TrimSuffix(argAfter(spec, "--ctorigdst"), "/32"), argAfter(spec, "--ctorigdstport"), argAfter(spec, "--to-source")}, " ")
}

// Bypass removes the service's DNAT: from now on new connections reach the
// relay. Connections the kernel already carries keep going to their
// container. It is not an error if there was none.
func (t *Table) Bypass(ctx context.Context, service string) error {
	if err := checkService(service); err != nil {
		return err
	}
	unlock, err := t.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	for _, c := range dnatChains {
		if err := t.deleteComment(ctx, "nat", c, "baton:"+service); err != nil {
			return err
		}
	}
	return nil
}

// Remove takes the service's kernel path away entirely (DNAT and SNAT).
// When no other route uses its bridge, the bridge's route_localnet goes
// back to what it was before baton set it, then its guards go. A forwarded
// route's ACCEPT goes only once the connections its DNAT made have ended
// (or after flowWait): unlike a NAT rule, which only the first packet of a
// connection meets, the filter meets every packet, and without it Docker's
// isolation drops the rest of a connection still open (an nginx keep-alive
// upstream connection, a request in flight). The wait is made without the
// host lock.
func (t *Table) Remove(ctx context.Context, service string) error {
	if err := checkService(service); err != nil {
		return err
	}
	comment := "baton:" + service
	accepts, err := t.removeRoute(ctx, comment)
	if err != nil || len(accepts) == 0 {
		return err
	}
	t.waitFlows(ctx, accepts)
	unlock, err := t.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if has, err := t.hasDNAT(ctx, comment); err != nil || has {
		return err // routed again meanwhile: its ACCEPT is in use
	}
	if err := t.deleteComment(ctx, "filter", chainFwd, comment); err != nil {
		return err
	}
	return t.dropIfEmpty(ctx)
}

// removeRoute is Remove's first part, under the host lock: the DNATs and
// SNATs go, and the bridges no loopback route uses any more are released.
// It returns the original destinations ("ADDR PORT") of the service's
// ACCEPTs, still in place; without any, the chains are dropped if empty.
func (t *Table) removeRoute(ctx context.Context, comment string) ([]string, error) {
	unlock, err := t.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, c := range dnatChains {
		if err := t.deleteComment(ctx, "nat", c, comment); err != nil {
			return nil, err
		}
	}
	snats, err := t.list(ctx, "nat", chainSNAT)
	if err != nil {
		return nil, err
	}
	var bridges []string
	for _, s := range snats {
		if commentOf(s) == comment {
			bridges = append(bridges, argAfter(s, "-o"))
		}
	}
	if err := t.deleteComment(ctx, "nat", chainSNAT, comment); err != nil {
		return nil, err
	}
	if err := t.releaseUnused(ctx, bridges); err != nil {
		return nil, err
	}
	fwd, err := t.list(ctx, "filter", chainFwd)
	if err != nil {
		return nil, err
	}
	var accepts []string
	for _, s := range fwd {
		if commentOf(s) == comment {
			accepts = append(accepts, acceptKey(s))
		}
	}
	if len(accepts) == 0 {
		return nil, t.dropIfEmpty(ctx)
	}
	return accepts, nil
}

// hasDNAT reports whether a DNAT with the comment is in either chain.
func (t *Table) hasDNAT(ctx context.Context, comment string) (bool, error) {
	for _, c := range dnatChains {
		rules, err := t.list(ctx, "nat", c)
		if err != nil {
			return false, err
		}
		if slices.ContainsFunc(rules, func(s []string) bool { return commentOf(s) == comment }) {
			return true, nil
		}
	}
	return false, nil
}

// flowWait bounds how long Remove waits for a forwarded route's
// connections (baton's default --drain).
const flowWait = 30 * time.Second

// waitFlows waits until conntrack holds no open connection for any of the
// original destinations ("ADDR PORT"), at most flowWait. Where conntrack
// cannot be read it waits flowGrace, which covers a request in flight.
func (t *Table) waitFlows(ctx context.Context, dests []string) {
	if t.openFlows == nil {
		return
	}
	deadline := time.Now().Add(flowWait)
	for {
		n, ok := t.openFlows(dests)
		if !ok {
			n = 1
			if g := time.Now().Add(flowGrace); g.Before(deadline) {
				deadline = g
			}
		}
		if n == 0 || !time.Now().Before(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// flowGrace is the wait when conntrack cannot be read.
const flowGrace = 2 * time.Second

// openFlows counts, in this network namespace's conntrack table, the
// connections not yet closed whose original destination is one of dests
// ("ADDR PORT") and that a DNAT sent elsewhere. ok is false when the table
// cannot be read.
func openFlows(dests []string) (n int, ok bool) { return openFlowsIn("/proc/net/nf_conntrack", dests) }

func openFlowsIn(path string, dests []string) (n int, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	want := map[string]bool{}
	for _, d := range dests {
		want[d] = true
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// ipv4 2 tcp 6 TIMEOUT STATE src= dst= sport= dport= ...: the
		// first dst= and dport= are the original direction's.
		if len(fields) < 6 || fields[2] != "tcp" || fields[5] == "TIME_WAIT" || fields[5] == "CLOSE" {
			continue
		}
		// The reply's src= is the second: a DNAT'd connection's is the
		// container's, not the original destination. The relay's own
		// connections have the same original destination and no NAT:
		// they pass no filter of baton's and do not count.
		var dst, dport, replySrc string
		srcs := 0
		for _, f := range fields[6:] {
			switch {
			case dst == "" && strings.HasPrefix(f, "dst="):
				dst = f[4:]
			case dport == "" && strings.HasPrefix(f, "dport="):
				dport = f[6:]
			case strings.HasPrefix(f, "src="):
				if srcs++; srcs == 2 {
					replySrc = f[4:]
				}
			}
		}
		if want[dst+" "+dport] && replySrc != "" && replySrc != dst {
			n++
		}
	}
	return n, sc.Err() == nil
}

// releaseUnused releases each of bridges that no loopback route's SNAT
// names any more (a forwarded route's needs no route_localnet).
func (t *Table) releaseUnused(ctx context.Context, bridges []string) error {
	snats, err := t.list(ctx, "nat", chainSNAT)
	if err != nil {
		return err
	}
	for _, b := range bridges {
		if b == "" || slices.ContainsFunc(snats, func(s []string) bool { return argAfter(s, "-o") == b && argAfter(s, "-s") == "127.0.0.0/8" }) {
			continue
		}
		if err := t.releaseBridge(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// dropIfEmpty takes baton's chains and the jumps to them away once no
// route is left in any of them, so a host whose last kernel path went
// keeps nothing of baton's in its firewall.
func (t *Table) dropIfEmpty(ctx context.Context) error {
	for _, j := range jumps {
		rules, err := t.list(ctx, j.table, j.spec[1])
		if err != nil || len(rules) > 0 {
			return err
		}
	}
	for _, j := range jumps {
		if _, err := t.ipt.Run(ctx, "-t", j.table, "-S", j.spec[1]); exitCode1(err) {
			continue // no chain, so no jump to it either (iptables refuses one)
		} else if err != nil {
			return err
		}
		for _, spec := range j.spellings() {
			if err := t.deleteSpec(ctx, rule{j.table, j.chain, spec}); err != nil {
				return err
			}
		}
		if _, err := t.ipt.Run(ctx, "-t", j.table, "-X", j.spec[1]); err != nil && !exitCode1(err) {
			return err
		}
	}
	return nil
}

// Target says where the service's DNAT sends new connections now, if it has
// one: "" when they go to the relay.
func (t *Table) Target(ctx context.Context, service string) (string, error) {
	for _, c := range dnatChains {
		rules, err := t.list(ctx, "nat", c)
		if err != nil {
			return "", err
		}
		for _, spec := range rules {
			if commentOf(spec) == "baton:"+service {
				return toDestination(spec), nil
			}
		}
	}
	return "", nil
}

// Has reports whether the service has any rule of a kernel path (its DNAT,
// or the SNAT a bypassed route keeps).
func (t *Table) Has(ctx context.Context, service string) (bool, error) {
	for _, chain := range []string{chainDNAT, chainPre, chainSNAT, chainFwd} {
		table := "nat"
		if chain == chainFwd {
			table = "filter"
		}
		rules, err := t.list(ctx, table, chain)
		if err != nil {
			return false, err
		}
		if slices.ContainsFunc(rules, func(s []string) bool { return commentOf(s) == "baton:"+service }) {
			return true, nil
		}
	}
	return false, nil
}

// setup makes baton's chains, the jumps to them (first in their chains:
// Docker's own MASQUERADE of local sources must not come before the
// SNAT), the bridge's guards and its route_localnet, in that order: the
// guards are in place before the bridge may route 127/8.
func (t *Table) setup(ctx context.Context, bridge string) error {
	if err := t.setupChains(ctx, loopbackJumps); err != nil {
		return err
	}
	path := filepath.Join(t.procSys, "net", "ipv4", "conf", bridge, "route_localnet")
	was, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("kernel path: route_localnet of %s: %w", bridge, err)
	}
	raw, err := t.list(ctx, "raw", chainRaw)
	if err != nil {
		return err
	}
	prior := strings.TrimSpace(string(was))
	for _, s := range raw {
		// Guards already there recorded the value before baton's first
		// route on this bridge; keep that one.
		if argAfter(s, "-i") == bridge && strings.HasPrefix(commentOf(s), guardComment) {
			prior = strings.TrimPrefix(commentOf(s), guardComment)
			break
		}
	}
	for _, g := range guards(bridge, prior) {
		if err := t.ensure(ctx, g); err != nil {
			return err
		}
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("kernel path: route_localnet on %s: %w", bridge, err)
	}
	return nil
}

// setupChains makes the chains js jump to and puts each jump first in its
// built-in chain.
func (t *Table) setupChains(ctx context.Context, js []rule) error {
	for _, j := range js {
		if _, err := t.ipt.Run(ctx, "-t", j.table, "-N", j.spec[1]); err != nil && !exitCode1(err) {
			return err
		}
		if err := t.ensureFirst(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// releaseBridge undoes setup's changes to bridge once no route uses it:
// route_localnet back to the value the guards recorded, then the guards.
func (t *Table) releaseBridge(ctx context.Context, bridge string) error {
	raw, err := t.list(ctx, "raw", chainRaw)
	if err != nil {
		return err
	}
	var del []int
	prior := ""
	for i, s := range raw {
		if argAfter(s, "-i") == bridge && strings.HasPrefix(commentOf(s), guardComment) {
			prior = strings.TrimPrefix(commentOf(s), guardComment)
			del = append(del, i+1)
		}
	}
	if prior == "0" && bridgeRE.MatchString(bridge) && bridge != "all" && bridge != "default" && bridge != "lo" && strings.Trim(bridge, ".") != "" {
		// The name came back from iptables: checked again as Validate
		// checks a route's, since it becomes a /proc path.
		path := filepath.Join(t.procSys, "net", "ipv4", "conf", bridge, "route_localnet")
		if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("kernel path: route_localnet on %s: %w", bridge, err)
		}
	}
	return t.deleteNumbers(ctx, "raw", chainRaw, del)
}

// ensureFirst makes j the first rule of its built-in chain, moving it there
// if something was inserted before it. Built-in chains are shared with
// Docker and others, who do not take baton's lock, so baton deletes there
// by its rule's text, never by a position another rule may have taken
// since it listed the chain. A move inserts first and deletes after (see
// rule.spellings), so the chain has a jump at every moment.
func (t *Table) ensureFirst(ctx context.Context, j rule) error {
	rules, err := t.list(ctx, j.table, j.chain)
	if err != nil {
		return err
	}
	sp := j.spellings()
	has := func(spec []string) bool {
		return slices.ContainsFunc(rules, func(s []string) bool { return slices.Equal(s, spec) })
	}
	if len(rules) > 0 && j.isJump(rules[0]) {
		// First already. Copies of the other spelling further down are
		// left by a move that did not finish: none of them is first.
		other := sp[0]
		if slices.Equal(rules[0], sp[0]) {
			other = sp[1]
		}
		if has(other) {
			return t.deleteSpec(ctx, rule{j.table, j.chain, other})
		}
		return nil
	}
	// Insert a spelling no rule uses yet (emptying the second one's
	// copies first when both are there: the first one's still jump), then
	// delete the other's copies, none of which is the new first rule.
	ins, old := sp[0], sp[1]
	switch {
	case has(sp[0]) && has(sp[1]):
		if err := t.deleteSpec(ctx, rule{j.table, j.chain, sp[1]}); err != nil {
			return err
		}
		ins, old = sp[1], sp[0]
	case has(sp[0]):
		ins, old = sp[1], sp[0]
	}
	if _, err := t.ipt.Run(ctx, append([]string{"-t", j.table, "-I", j.chain, "1"}, ins...)...); err != nil {
		return err
	}
	return t.deleteSpec(ctx, rule{j.table, j.chain, old})
}

// deleteSpec deletes every copy of r from its chain, by its text.
func (t *Table) deleteSpec(ctx context.Context, r rule) error {
	for range 100 { // more copies than that are not baton's doing
		_, err := t.ipt.Run(ctx, append([]string{"-t", r.table, "-D", r.chain}, r.spec...)...)
		if exitCode1(err) {
			return nil // no copy left
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("kernel path: more than 100 copies of %s in %s %s", strings.Join(r.spec, " "), r.table, r.chain)
}

// ensure appends r unless it is there. Only iptables' "no such rule" counts
// as absent: a check that failed for another reason (the lock) must not
// add a duplicate.
func (t *Table) ensure(ctx context.Context, r rule) error {
	_, err := t.ipt.Run(ctx, append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...)
	if err == nil {
		return nil
	}
	if !exitCode1(err) {
		return err
	}
	_, err = t.ipt.Run(ctx, append([]string{"-t", r.table, "-A", r.chain}, r.spec...)...)
	return err
}

// deleteComment deletes every rule of chain with the comment.
func (t *Table) deleteComment(ctx context.Context, table, chain, comment string) error {
	rules, err := t.list(ctx, table, chain)
	if err != nil {
		return err
	}
	var del []int
	for i, s := range rules {
		if commentOf(s) == comment {
			del = append(del, i+1)
		}
	}
	return t.deleteNumbers(ctx, table, chain, del)
}

// deleteNumbers deletes the rules at the given 1-based positions (as list
// numbered them; the host lock keeps other batons from renumbering them),
// highest first.
func (t *Table) deleteNumbers(ctx context.Context, table, chain string, nums []int) error {
	slices.Sort(nums)
	for _, n := range slices.Backward(nums) {
		if _, err := t.ipt.Run(ctx, "-t", table, "-D", chain, fmt.Sprint(n)); err != nil {
			return err
		}
	}
	return nil
}

// list returns chain's rules as iptables -S prints them, without "-A
// CHAIN", in order; a chain that does not exist has none.
func (t *Table) list(ctx context.Context, table, chain string) ([][]string, error) {
	out, err := t.ipt.Run(ctx, "-t", table, "-S", chain)
	if err != nil {
		if exitCode1(err) {
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

func commentOf(spec []string) string { return argAfter(spec, "--comment") }

func toDestination(spec []string) string { return argAfter(spec, "--to-destination") }

func argAfter(spec []string, flag string) string {
	if i := slices.Index(spec, flag); i >= 0 && i+1 < len(spec) {
		return spec[i+1]
	}
	return ""
}

// checkLive checks r against this network namespace: the bridge exists
// and is the target's network (a prefix of its holds the target), the
// source is the bridge's own address on the target's subnet. A route that
// fails this would send packets with a loopback source out of the wrong
// interface, or from an address the container cannot answer.
func checkLive(r Route) error {
	br, err := net.InterfaceByName(r.Bridge)
	if err != nil {
		return fmt.Errorf("kernel path: bridge %s: %w", r.Bridge, err)
	}
	if br.Flags&net.FlagLoopback != 0 {
		return fmt.Errorf("kernel path: %s is a loopback interface, not the container's network", r.Bridge)
	}
	onBridge, err := prefixes(br)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(onBridge, func(p netip.Prefix) bool { return p.Contains(r.Target.Addr()) }) {
		return fmt.Errorf("kernel path: target %s is not on %s's network %v", r.Target.Addr(), r.Bridge, onBridge)
	}
	if !slices.ContainsFunc(onBridge, func(p netip.Prefix) bool { return p.Addr() == r.Source && p.Contains(r.Target.Addr()) }) {
		return fmt.Errorf("kernel path: source %s is not %s's own address on %s's subnet %v: the container could not answer it on its link", r.Source, r.Bridge, r.Target.Addr(), onBridge)
	}
	if r.Forwarded() {
		// The DNAT catches connections for an address of this host
		// only: one of another machine would redirect traffic this
		// host merely routes.
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return fmt.Errorf("kernel path: this host's addresses: %w", err)
		}
		if !slices.ContainsFunc(addrs, func(a net.Addr) bool {
			n, ok := a.(*net.IPNet)
			p, perr := netip.ParsePrefix(fmt.Sprint(n))
			return ok && perr == nil && p.Addr() == r.Listen.Addr()
		}) {
			return fmt.Errorf("kernel path: relay address %s is not an address of the engine's host", r.Listen.Addr())
		}
	}
	return nil
}

func prefixes(ifc *net.Interface) ([]netip.Prefix, error) {
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, fmt.Errorf("kernel path: addresses of %s: %w", ifc.Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr().Is4() {
				out = append(out, p)
			}
		}
	}
	return out, nil
}
