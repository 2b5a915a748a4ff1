package kernelpath

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeIPT is iptables as far as Table uses it: chains of rules, -N -S -C -A
// -I -D, exit status 1 for "no" and the -S output's habits (the implied
// "-m tcp", quoted comments with spaces).
type fakeIPT struct {
	chains map[string][]string // "table/chain" -> rules, as -S prints them after "-A CHAIN "
	order  []string            // chain creation order, for -S of builtins
	failC  int                 // if set, -C fails with this exit status
	calls  []string
	after  func(call string) // if set, called after every call
}

type fakeExit int

func (e fakeExit) Error() string { return "exit status " + strconv.Itoa(int(e)) }
func (e fakeExit) ExitCode() int { return int(e) }

var builtin = []string{"nat/OUTPUT", "nat/POSTROUTING", "nat/PREROUTING", "raw/PREROUTING", "raw/OUTPUT", "filter/DOCKER-USER"}

func newFakeIPT() *fakeIPT {
	f := &fakeIPT{chains: map[string][]string{}}
	for _, b := range builtin {
		f.chains[b] = nil
	}
	return f
}

func normalize(spec []string) string {
	spec = slices.Clone(spec)
	if i := slices.Index(spec, "tcp"); i > 0 && spec[i-1] == "-p" && slices.Contains(spec, "--dport") && !(i+2 < len(spec) && spec[i+1] == "-m" && spec[i+2] == "tcp") {
		spec = slices.Insert(spec, i+1, "-m", "tcp")
	}
	for i, a := range spec {
		if strings.Contains(a, " ") {
			spec[i] = `"` + a + `"`
		}
	}
	return strings.Join(spec, " ")
}

func (f *fakeIPT) Run(_ context.Context, args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(args, " "))
	if f.after != nil {
		defer f.after(strings.Join(args, " "))
	}
	if len(args) < 4 || args[0] != "-t" {
		return nil, fmt.Errorf("fake iptables: unexpected %q", args)
	}
	key := args[1] + "/" + args[3]
	rules, exists := f.chains[key]
	spec := args[4:]
	switch args[2] {
	case "-N":
		if exists {
			return nil, fakeExit(1)
		}
		f.chains[key] = nil
	case "-S":
		if !exists {
			return nil, fakeExit(1)
		}
		var b strings.Builder
		if slices.Contains(builtin, key) {
			fmt.Fprintf(&b, "-P %s ACCEPT\n", args[3])
		} else {
			fmt.Fprintf(&b, "-N %s\n", args[3])
		}
		for _, r := range rules {
			fmt.Fprintf(&b, "-A %s %s\n", args[3], r)
		}
		return []byte(b.String()), nil
	case "-C":
		if f.failC != 0 {
			return nil, fakeExit(f.failC)
		}
		if !exists || !slices.Contains(rules, normalize(spec)) {
			return nil, fakeExit(1)
		}
	case "-A":
		if !exists {
			return nil, fakeExit(1)
		}
		f.chains[key] = append(rules, normalize(spec))
	case "-I":
		n, err := strconv.Atoi(spec[0])
		if !exists || err != nil || n < 1 || n > len(rules)+1 {
			return nil, fakeExit(1)
		}
		f.chains[key] = slices.Insert(rules, n-1, normalize(spec[1:]))
	case "-D":
		if !exists {
			return nil, fakeExit(2) // iptables: "Chain ... does not exist", status 2 (seen with 1.8.9)
		}
		if n, err := strconv.Atoi(spec[0]); err == nil && len(spec) == 1 {
			if !exists || n < 1 || n > len(rules) {
				return nil, fakeExit(1)
			}
			f.chains[key] = slices.Delete(rules, n-1, n)
			return nil, nil
		}
		i := slices.Index(rules, normalize(spec))
		if i < 0 {
			return nil, fakeExit(1)
		}
		f.chains[key] = slices.Delete(rules, i, i+1)
	case "-X":
		// iptables refuses to delete a built-in chain, one with rules, or
		// one a rule still jumps to.
		if !exists || slices.Contains(builtin, key) || len(rules) > 0 {
			return nil, fakeExit(1)
		}
		for k, rs := range f.chains {
			if strings.HasPrefix(k, args[1]+"/") && slices.ContainsFunc(rs, func(r string) bool { return strings.HasSuffix(r, "-j "+args[3]) }) {
				return nil, fakeExit(1)
			}
		}
		delete(f.chains, key)
	default:
		return nil, fmt.Errorf("fake iptables: unexpected %q", args)
	}
	return nil, nil
}

func (f *fakeIPT) serviceRules(table, chain, service string) []string {
	var out []string
	for _, r := range f.chains[table+"/"+chain] {
		if strings.Contains(r, "--comment baton:"+service+" ") {
			out = append(out, r)
		}
	}
	return out
}

func fakeTable(t *testing.T, f *fakeIPT, bridge, routeLocalnet string) (*Table, string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "net", "ipv4", "conf", bridge)
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(conf, "route_localnet")
	if err := os.WriteFile(path, []byte(routeLocalnet+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Table{ipt: f, procSys: dir, lockPath: filepath.Join(dir, "lock"), checkLive: func(Route) error { return nil }}, path
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestTableRouteRetargetsWithOneRule(t *testing.T) {
	ctx := context.Background()
	f := newFakeIPT()
	// Docker's own rule first in POSTROUTING: baton's jump must go before it.
	f.chains["nat/POSTROUTING"] = []string{"-s 172.18.0.0/16 ! -o br-0123456789ab -j MASQUERADE"}
	tbl, rl := fakeTable(t, f, "br-0123456789ab", "0")
	a, b := validRoute(), validRoute()
	b.Target = netip.MustParseAddrPort("172.18.0.6:8080")

	for _, r := range []Route{a, a, b} {
		if err := tbl.Route(ctx, r); err != nil {
			t.Fatalf("route to %s: %v", r.Target, err)
		}
	}
	if got := f.serviceRules("nat", chainDNAT, "web"); len(got) != 1 || !strings.HasSuffix(got[0], "--to-destination 172.18.0.6:8080") {
		t.Errorf("DNAT rules after routing to a, a, b: %q, want one, to b", got)
	}
	if got, _ := tbl.Target(ctx, "web"); got != "172.18.0.6:8080" {
		t.Errorf("Target %q", got)
	}
	if got := f.serviceRules("nat", chainSNAT, "web"); len(got) != 1 {
		t.Errorf("SNAT rules %q, want one", got)
	}
	for _, j := range loopbackJumps {
		rules := f.chains[j.table+"/"+j.chain]
		if len(rules) == 0 || rules[0] != strings.Join(j.spec, " ") || slices.Index(rules[1:], rules[0]) >= 0 {
			t.Errorf("%s/%s: %q, want the jump first and once", j.table, j.chain, rules)
		}
	}
	if got := f.chains["raw/"+chainRaw]; len(got) != 2 || !strings.Contains(got[0], guardComment+"0") {
		t.Errorf("guards %q", got)
	}
	if v := readTrim(t, rl); v != "1" {
		t.Errorf("route_localnet %q while routed, want 1", v)
	}
	// The second route to a changed nothing: no insert.
	inserts := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, "-t nat -I "+chainDNAT) {
			inserts++
		}
	}
	if inserts != 2 {
		t.Errorf("%d DNAT inserts for routes to a, a, b; want 2", inserts)
	}
}

// A crash between the insert of the new DNAT and the delete of the old
// leaves both: the new first, in effect. The next Route (status repairing)
// leaves the right one alone and the other service's untouched.
func TestTableRouteAfterCrashLeavesOne(t *testing.T) {
	ctx := context.Background()
	f := newFakeIPT()
	tbl, _ := fakeTable(t, f, "br-0123456789ab", "0")
	other := validRoute()
	other.Service, other.Listen = "api", netip.MustParseAddrPort("127.0.0.1:41235")
	if err := tbl.Route(ctx, other); err != nil {
		t.Fatal(err)
	}
	a, b := validRoute(), validRoute()
	b.Target = netip.MustParseAddrPort("172.18.0.6:8080")
	d := f.chains["nat/"+chainDNAT]
	f.chains["nat/"+chainDNAT] = append([]string{normalize(b.dnat().spec), normalize(a.dnat().spec)}, d...)

	if err := tbl.Route(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := f.serviceRules("nat", chainDNAT, "web"); len(got) != 1 || !strings.HasSuffix(got[0], "172.18.0.6:8080") {
		t.Errorf("web's DNAT rules %q, want one, to b", got)
	}
	if got := f.serviceRules("nat", chainDNAT, "api"); len(got) != 1 {
		t.Errorf("api's DNAT rules %q, want its one untouched", got)
	}
	// A service may not take another's listen address.
	clash := validRoute()
	clash.Service = "shop"
	clash.Listen = other.Listen
	if err := tbl.Route(ctx, clash); err == nil || !strings.Contains(err.Error(), "api's already") {
		t.Errorf("route to api's listen address: %v, want refused naming api", err)
	}
	if got := f.serviceRules("nat", chainDNAT, "shop"); len(got) != 0 {
		t.Errorf("refused route left rules %q", got)
	}
}

func TestTableBypassAndRemove(t *testing.T) {
	ctx := context.Background()
	for _, prior := range []string{"0", "1"} {
		f := newFakeIPT()
		tbl, rl := fakeTable(t, f, "br-0123456789ab", prior)
		// Docker's own rules, which baton's must never touch.
		docker := []string{"-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER", "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"}
		f.chains["nat/OUTPUT"] = []string{strings.TrimPrefix(docker[0], "-A OUTPUT ")}
		f.chains["nat/POSTROUTING"] = []string{strings.TrimPrefix(docker[1], "-A POSTROUTING ")}
		web, api := validRoute(), validRoute()
		api.Service, api.Listen, api.Target = "api", netip.MustParseAddrPort("127.0.0.1:41235"), netip.MustParseAddrPort("172.18.0.9:80")
		for _, r := range []Route{web, api} {
			if err := tbl.Route(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 { // a second bypass finds nothing to do
			if err := tbl.Bypass(ctx, "web"); err != nil {
				t.Fatalf("bypass: %v", err)
			}
		}
		if got := f.serviceRules("nat", chainDNAT, "web"); len(got) != 0 {
			t.Errorf("DNAT after bypass: %q", got)
		}
		if got := f.serviceRules("nat", chainSNAT, "web"); len(got) != 1 {
			t.Errorf("SNAT after bypass: %q, want it kept (flows in flight use it)", got)
		}
		if err := tbl.Remove(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		if got := len(f.chains["raw/"+chainRaw]); got != 2 || readTrim(t, rl) != "1" {
			t.Errorf("prior %s: api still routed on the bridge, but guards %d, route_localnet %s", prior, got, readTrim(t, rl))
		}
		if _, ok := f.chains["nat/"+chainDNAT]; !ok || f.chains["nat/OUTPUT"][0] != "-j "+chainDNAT {
			t.Errorf("prior %s: api still routed, but the DNAT chain or its jump went: %q", prior, f.chains["nat/OUTPUT"])
		}
		if err := tbl.Remove(ctx, "api"); err != nil {
			t.Fatal(err)
		}
		if got := f.chains["raw/"+chainRaw]; len(got) != 0 {
			t.Errorf("prior %s: guards left after the last route went: %q", prior, got)
		}
		if v := readTrim(t, rl); v != prior {
			t.Errorf("route_localnet %s after the last route went, want it back at %s", v, prior)
		}
		// Nothing of baton's is left in the firewall, and nothing else
		// was touched.
		for _, c := range []string{"nat/" + chainDNAT, "nat/" + chainSNAT, "raw/" + chainRaw} {
			if _, ok := f.chains[c]; ok {
				t.Errorf("prior %s: chain %s left after the last route went", prior, c)
			}
		}
		if got := f.chains["nat/OUTPUT"]; !slices.Equal(got, []string{strings.TrimPrefix(docker[0], "-A OUTPUT ")}) {
			t.Errorf("prior %s: nat OUTPUT is %q, want Docker's rule alone", prior, got)
		}
		if got := f.chains["nat/POSTROUTING"]; !slices.Equal(got, []string{strings.TrimPrefix(docker[1], "-A POSTROUTING ")}) {
			t.Errorf("prior %s: nat POSTROUTING is %q, want Docker's rule alone", prior, got)
		}
		if got := f.chains["raw/PREROUTING"]; len(got) != 0 {
			t.Errorf("prior %s: raw PREROUTING is %q, want it empty again", prior, got)
		}
		// Removing again, with nothing of baton's left, is no error.
		if err := tbl.Remove(ctx, "api"); err != nil {
			t.Fatalf("remove with no chains left: %v", err)
		}
		// A route after that sets everything up again.
		if err := tbl.Route(ctx, web); err != nil {
			t.Fatalf("route after the chains went: %v", err)
		}
		if got := f.serviceRules("nat", chainDNAT, "web"); len(got) != 1 {
			t.Errorf("prior %s: DNAT after routing again: %q", prior, got)
		}
		if err := tbl.Remove(ctx, "web"); err != nil {
			t.Fatal(err)
		}
	}
}

// A check that failed for another reason than "no such rule" (the xtables
// lock, exit status 4) is an error, not a reason to add a duplicate.
func TestTableCheckFailureAddsNothing(t *testing.T) {
	f := newFakeIPT()
	tbl, _ := fakeTable(t, f, "br-0123456789ab", "0")
	f.failC = 4
	if err := tbl.Route(context.Background(), validRoute()); err == nil {
		t.Fatal("route with every check failing: no error")
	}
	for _, c := range f.calls {
		if strings.Contains(c, " -A ") {
			t.Errorf("appended after a failed check: %s", c)
		}
	}
}

// A route whose SNAT changed (the relay recreated on another address, the
// service's network on another bridge) replaces the old DNAT and SNAT, and the old
// bridge, which no route uses any more, gets its route_localnet and guards
// back as they were; another service's rules stay.
func TestTableRouteReplacesStaleSNAT(t *testing.T) {
	ctx := context.Background()
	f := newFakeIPT()
	tbl, oldRL := fakeTable(t, f, "br-0123456789ab", "0")
	newConf := filepath.Join(tbl.procSys, "net", "ipv4", "conf", "br-ba9876543210")
	if err := os.MkdirAll(newConf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(newConf, "route_localnet"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	web, api := validRoute(), validRoute()
	api.Service, api.Listen, api.Bridge = "api", netip.MustParseAddrPort("127.0.0.1:41235"), "br-ba9876543210"
	for _, r := range []Route{web, api} {
		if err := tbl.Route(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	moved := web
	moved.Listen, moved.Bridge = netip.MustParseAddrPort("127.0.0.1:41299"), "br-ba9876543210"
	if err := tbl.Route(ctx, moved); err != nil {
		t.Fatal(err)
	}
	got := f.serviceRules("nat", chainSNAT, "web")
	if len(got) != 1 || !strings.Contains(got[0], "-o br-ba9876543210") || !strings.Contains(got[0], "--ctorigdstport 41299") {
		t.Fatalf("web's SNAT after the move: %q, want the new one alone", got)
	}
	if got := f.serviceRules("nat", chainSNAT, "api"); len(got) != 1 {
		t.Fatalf("api's SNAT: %q", got)
	}
	// The same target on a new listen address: the DNAT moves too (the
	// old port, freed, may become another relay's).
	if got := f.serviceRules("nat", chainDNAT, "web"); len(got) != 1 || !strings.Contains(got[0], "--dport 41299") {
		t.Fatalf("web's DNAT after the move: %q, want the new listen address alone", got)
	}
	if v := readTrim(t, oldRL); v != "0" {
		t.Errorf("route_localnet of the bridge no route uses: %s, want 0 again", v)
	}
	for _, g := range f.chains["raw/"+chainRaw] {
		if strings.Contains(g, "br-0123456789ab") {
			t.Errorf("guard of the released bridge left: %s", g)
		}
	}
	// Routing again as it is now changes nothing.
	n := len(f.calls)
	if err := tbl.Route(ctx, moved); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.calls[n:] {
		if strings.Contains(c, " -D ") || strings.Contains(c, " -I "+chainDNAT) {
			t.Errorf("a route as it is changed a rule: %s", c)
		}
	}
}

// A rule inserted before baton's jump (Docker puts its own first at every
// network it creates) moves baton's back to the top, again and again; the
// other rule stays, no copy of the jump is left behind, and no chain is
// ever without its jump: with the SNAT's gone for a moment, a DNAT'd SYN
// leaves with 127.0.0.1 as its source and is never answered.
func TestTableJumpMovesBackFirst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		route Route
		jumps []rule
	}{
		{"loopback", validRoute(), loopbackJumps},
		{"forwarded", forwardedRoute(), forwardJumps},
	} {
		t.Run(tc.name, func(t *testing.T) { testJumpMovesBackFirst(t, tc.route, tc.jumps) })
	}
}

func testJumpMovesBackFirst(t *testing.T, route Route, jumps []rule) {
	ctx := context.Background()
	f := newFakeIPT()
	tbl, _ := fakeTable(t, f, "br-0123456789ab", "0")
	if err := tbl.Route(ctx, route); err != nil {
		t.Fatal(err)
	}
	jumpCount := func(j rule) int {
		n := 0
		for _, r := range f.chains[j.table+"/"+j.chain] {
			if fields, err := splitRule(r); err == nil && j.isJump(fields) {
				n++
			}
		}
		return n
	}
	f.after = func(call string) {
		for _, j := range jumps {
			if jumpCount(j) == 0 {
				t.Errorf("after %q: %s %s has no jump to %s", call, j.table, j.chain, j.spec[1])
			}
		}
	}
	foreign := map[string]string{
		"nat/OUTPUT":         "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
		"nat/POSTROUTING":    "-s 172.18.0.0/16 ! -o br-0123456789ab -j MASQUERADE",
		"raw/PREROUTING":     "-d 172.18.0.2/32 ! -i br-0123456789ab -j DROP",
		"nat/PREROUTING":     "-m addrtype --dst-type LOCAL -j DOCKER",
		"filter/DOCKER-USER": "-j RETURN",
	}
	for round := 1; round <= 3; round++ {
		for _, j := range jumps {
			key := j.table + "/" + j.chain
			f.chains[key] = append([]string{foreign[key]}, f.chains[key]...)
		}
		if round == 3 {
			// A move that stopped half-way (a crash between its insert
			// and its delete) left both spellings; the next one cleans up.
			for _, j := range jumps {
				key := j.table + "/" + j.chain
				sp := j.spellings()
				f.chains[key] = append(f.chains[key], normalize(sp[0]), normalize(sp[1]))
			}
		}
		f.calls = nil
		if err := tbl.Route(ctx, route); err != nil {
			t.Fatal(err)
		}
		for _, j := range jumps {
			key := j.table + "/" + j.chain
			got := f.chains[key]
			first, err := splitRule(got[0])
			if err != nil || !j.isJump(first) || jumpCount(j) != 1 || !slices.Contains(got, foreign[key]) {
				t.Fatalf("round %d: %s %q, want one jump, first, and the other rule kept", round, key, got)
			}
		}
		for _, c := range f.calls {
			for _, j := range jumps {
				prefix := "-t " + j.table + " -D " + j.chain + " "
				sp := j.spellings()
				if strings.HasPrefix(c, prefix) && c != prefix+strings.Join(sp[0], " ") && c != prefix+strings.Join(sp[1], " ") {
					t.Errorf("a delete in a shared chain by position or another rule's text: %s", c)
				}
			}
		}
	}
	// The last route's removal takes either spelling away.
	f.after = nil
	if err := tbl.Remove(ctx, route.Service); err != nil {
		t.Fatal(err)
	}
	for _, j := range jumps {
		if n := jumpCount(j); n != 0 {
			t.Errorf("after the last Remove: %d jumps in %s %s", n, j.table, j.chain)
		}
	}
}

// The host lock refuses a directory others may write (where anyone could
// take the lock first), and a lock held elsewhere costs a bounded wait, not
// a hang; with the lock free (the positive control) a route goes in.
func TestTableLock(t *testing.T) {
	f := newFakeIPT()
	tbl, _ := fakeTable(t, f, "br-0123456789ab", "0")
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	good := tbl.lockPath
	tbl.lockPath = filepath.Join(open, "kernelpath.lock")
	if err := tbl.Route(context.Background(), validRoute()); err == nil || !strings.Contains(err.Error(), "no one else may write") {
		t.Fatalf("route with the lock in a world-writable directory: %v", err)
	}
	tbl.lockPath = good
	held, err := os.OpenFile(good, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := tbl.Route(ctx, validRoute()); err == nil || !strings.Contains(err.Error(), "another baton holds it") {
		t.Fatalf("route while another process holds the lock: %v", err)
	}
	_ = held.Close()
	if err := tbl.Route(context.Background(), validRoute()); err != nil {
		t.Fatalf("route with the lock free: %v", err)
	}
}

func forwardedRoute() Route {
	r := validRoute()
	r.Listen = netip.MustParseAddrPort("10.0.0.11:8081")
	return r
}

// A forwarded route (nginx on another machine reaches the relay on the
// host's own address) puts its DNAT in nat PREROUTING, where those
// connections arrive, not in OUTPUT; its SNAT takes any source; an ACCEPT
// in DOCKER-USER lets exactly the DNAT'd connections past Docker's
// isolation; no 127/8 is touched (no guards, route_localnet as it was).
// Moving the relay between kinds leaves no rule of the other kind, and
// the last Remove leaves nothing of baton's.
func TestTableForwardedRoute(t *testing.T) {
	ctx := context.Background()
	f := newFakeIPT()
	tbl, rl := fakeTable(t, f, "br-0123456789ab", "0")
	fw := forwardedRoute()
	if err := tbl.Route(ctx, fw); err != nil {
		t.Fatal(err)
	}
	if got := f.serviceRules("nat", chainPre, "web"); len(got) != 1 || !strings.Contains(got[0], "-d 10.0.0.11/32") || !strings.HasSuffix(got[0], "--to-destination 172.18.0.5:8080") {
		t.Errorf("PREROUTING DNAT %q", got)
	}
	if got := f.serviceRules("nat", chainDNAT, "web"); len(got) != 0 {
		t.Errorf("a forwarded route's DNAT in OUTPUT's chain: %q", got)
	}
	if got := f.serviceRules("nat", chainSNAT, "web"); len(got) != 1 || strings.Contains(got[0], "127.0.0.0/8") || !strings.Contains(got[0], "--ctorigdst 10.0.0.11") {
		t.Errorf("SNAT %q", got)
	}
	if got := f.serviceRules("filter", chainFwd, "web"); len(got) != 1 || !strings.Contains(got[0], "--ctorigdst 10.0.0.11 --ctorigdstport 8081") || !strings.HasSuffix(got[0], "-j ACCEPT") {
		t.Errorf("ACCEPT %q", got)
	}
	if got := f.chains["raw/"+chainRaw]; len(got) != 0 {
		t.Errorf("guards for a forwarded route: %q", got)
	}
	if v := readTrim(t, rl); v != "0" {
		t.Errorf("route_localnet %s for a forwarded route", v)
	}
	if got, _ := tbl.Target(ctx, "web"); got != "172.18.0.5:8080" {
		t.Errorf("Target %q", got)
	}
	if has, _ := tbl.Has(ctx, "web"); !has {
		t.Error("Has: false")
	}
	// Bypass takes the DNAT away and keeps the way open for the
	// connections already carried.
	if err := tbl.Bypass(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got, _ := tbl.Target(ctx, "web"); got != "" {
		t.Errorf("Target after Bypass %q", got)
	}
	if got := f.serviceRules("filter", chainFwd, "web"); len(got) != 1 {
		t.Errorf("ACCEPT after Bypass %q", got)
	}
	// The relay moved to another address of the host: one rule of each.
	moved := fw
	moved.Listen = netip.MustParseAddrPort("10.0.0.12:8081")
	for _, r := range []Route{fw, moved} {
		if err := tbl.Route(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ table, chain string }{{"nat", chainPre}, {"nat", chainSNAT}, {"filter", chainFwd}} {
		got := f.serviceRules(c.table, c.chain, "web")
		if len(got) != 1 || !strings.Contains(got[0], "10.0.0.12") {
			t.Errorf("%s %s after the move: %q, want one rule for 10.0.0.12", c.table, c.chain, got)
		}
	}
	// Back to a loopback relay: the forwarded rules go.
	if err := tbl.Route(ctx, validRoute()); err != nil {
		t.Fatal(err)
	}
	if got := f.serviceRules("nat", chainPre, "web"); len(got) != 0 {
		t.Errorf("forwarded DNAT left after a loopback route: %q", got)
	}
	if got := f.serviceRules("filter", chainFwd, "web"); len(got) != 0 {
		t.Errorf("ACCEPT left after a loopback route: %q", got)
	}
	if got := f.serviceRules("nat", chainDNAT, "web"); len(got) != 1 {
		t.Errorf("loopback DNAT %q", got)
	}
	if v := readTrim(t, rl); v != "1" {
		t.Errorf("route_localnet %s for a loopback route", v)
	}
	if err := tbl.Route(ctx, fw); err != nil {
		t.Fatal(err)
	}
	if got := f.serviceRules("nat", chainDNAT, "web"); len(got) != 0 {
		t.Errorf("loopback DNAT left after a forwarded route: %q", got)
	}
	// The bridge has no loopback route left: its guards go and its
	// route_localnet is back, although a forwarded route's SNAT names it.
	if got := f.chains["raw/"+chainRaw]; len(got) != 0 {
		t.Errorf("guards left after the loopback route became a forwarded one: %q", got)
	}
	if v := readTrim(t, rl); v != "0" {
		t.Errorf("route_localnet %s after the loopback route became a forwarded one", v)
	}
	// Remove waits for the connections the DNAT made before the ACCEPT
	// goes: the DNAT and SNAT are gone while they finish, the ACCEPT not.
	left := 3
	var acceptDuring []string
	tbl.openFlows = func(dests []string) (int, bool) {
		if !slices.Equal(dests, []string{"10.0.0.11 8081"}) {
			t.Errorf("flows looked for %q", dests)
		}
		if left == 3 {
			acceptDuring = f.serviceRules("filter", chainFwd, "web")
			if n := len(f.serviceRules("nat", chainPre, "web")); n != 0 {
				t.Errorf("DNAT still there while waiting for flows")
			}
		}
		left--
		return left, true
	}
	if err := tbl.Remove(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if left != 0 || len(acceptDuring) != 1 {
		t.Errorf("Remove: %d looks left, ACCEPT while waiting %q; want it kept until no flow was open", left, acceptDuring)
	}
	for key, rules := range f.chains {
		for _, r := range rules {
			if strings.Contains(r, "BATON") || strings.Contains(r, "baton") {
				t.Errorf("after Remove: %s has %q", key, r)
			}
		}
		if strings.Contains(key, "BATON") {
			t.Errorf("after Remove: chain %s left", key)
		}
	}
}

// openFlows counts the connections not yet closed by their original
// destination, whatever the NAT made of the reply.
func TestOpenFlows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nf_conntrack")
	table := `ipv4     2 tcp      6 431999 ESTABLISHED src=10.200.1.1 dst=10.200.1.2 sport=40000 dport=8081 src=172.18.0.5 dst=172.18.0.1 sport=8080 dport=40000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 119 TIME_WAIT src=10.200.1.1 dst=10.200.1.2 sport=40001 dport=8081 src=172.18.0.5 dst=172.18.0.1 sport=8080 dport=40001 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 59 FIN_WAIT src=10.200.1.1 dst=10.200.1.2 sport=40002 dport=8081 src=172.18.0.5 dst=172.18.0.1 sport=8080 dport=40002 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=10.200.1.1 dst=10.200.1.2 sport=40003 dport=22 src=10.200.1.2 dst=10.200.1.1 sport=22 dport=40003 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=10.200.1.1 dst=10.200.1.2 sport=40004 dport=8081 src=10.200.1.2 dst=10.200.1.1 sport=8081 dport=40004 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=10.200.1.1 dst=10.200.1.2 sport=53 dport=8081 src=10.200.1.2 dst=10.200.1.1 sport=8081 dport=53 mark=0 zone=0 use=2
`
	if err := os.WriteFile(path, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, ok := openFlowsIn(path, []string{"10.200.1.2 8081"}); !ok || n != 2 {
		t.Errorf("open flows %d %v, want 2 (ESTABLISHED and FIN_WAIT; not TIME_WAIT, not UDP, not another port, not one to the relay itself)", n, ok)
	}
	if n, ok := openFlowsIn(path, []string{"10.200.1.3 8081"}); !ok || n != 0 {
		t.Errorf("another address: %d %v", n, ok)
	}
	if _, ok := openFlowsIn(filepath.Join(t.TempDir(), "none"), nil); ok {
		t.Error("an unreadable table read as empty")
	}
}
