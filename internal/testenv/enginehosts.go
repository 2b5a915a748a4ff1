package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"
)

// EngineHost is one "host" of a multi-host test: a current Docker Engine
// (scripts/docker-current) in its own network namespace, with its own socket
// and data root, joined to the test's namespace by a veth pair. The test
// reaches the host at Addr (where a relay publishes for nginx) and, through
// a route, the engine's container networks, as a controller on the same LAN
// would; nothing else in that namespace is reachable.
type EngineHost struct {
	Name      string // the engine's name: its netns, data root and exec root
	Socket    string // unix:///run/<Name>/docker.sock
	Addr      string // the host's address on the veth, e.g. 10.210.1.2
	LocalAddr string // the test's end of the veth
	Pool      string // the engine's container networks, e.g. 10.211.0.0/16
	Client    *client.Client
	// StartTime is how long the engine took to answer.
	StartTime time.Duration
	veth      string // the test's end of the veth pair
}

// EngineHostsOpts says how many engine hosts StartEngineHosts runs and how
// they are named.
type EngineHostsOpts struct {
	// Prefix names everything (netns, veths, roots): <Prefix>-host<i>; at
	// most 8 characters so veth names fit in 15.
	Prefix string
	N      int // at most 9
	// Net is the second octet of the test's addresses: host i's veth pair
	// is 10.<Net>.i.0/30 and its container networks 10.<Net+i>.0.0/16.
	Net int
}

// StartEngineHosts starts opts.N engines side by side (in parallel: each
// takes seconds to come up) and removes them, their namespaces, veths and
// routes when the test ends. A lock per prefix makes two test processes
// with the same prefix take turns rather than share engines.
func StartEngineHosts(t TB, opts EngineHostsOpts) []*EngineHost {
	t.Helper()
	if len(opts.Prefix) > 8 || opts.N < 1 || opts.N > 9 || opts.Net < 1 || opts.Net+opts.N > 254 {
		t.Fatalf("StartEngineHosts: prefix %q (max 8 chars), %d hosts (1-9), net %d", opts.Prefix, opts.N, opts.Net)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatalf("module root: %v", err)
	}
	script := filepath.Join(root, "scripts", "docker-current")
	if err := os.MkdirAll("/run/lock", 0o755); err != nil {
		t.Fatalf("lock dir: %v", err)
	}
	lock, err := os.OpenFile("/run/lock/"+opts.Prefix+"-engine-hosts.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("engine hosts lock: %v", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatalf("engine hosts lock: %v", err)
	}
	t.Cleanup(func() { _ = unix.Flock(int(lock.Fd()), unix.LOCK_UN); _ = lock.Close() })

	hosts := make([]*EngineHost, opts.N)
	for i := range hosts {
		n := i + 1
		h := &EngineHost{
			Name:      fmt.Sprintf("%s-host%d", opts.Prefix, n),
			Addr:      fmt.Sprintf("10.%d.%d.2", opts.Net, n),
			LocalAddr: fmt.Sprintf("10.%d.%d.1", opts.Net, n),
			Pool:      fmt.Sprintf("10.%d.0.0/16", opts.Net+n),
		}
		h.Socket = "unix:///run/" + h.Name + "/docker.sock"
		hosts[i] = h
		t.Cleanup(func() { h.stop(t, script) })
	}
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.start(t.Context(), script, fmt.Sprintf("%s-v%da", opts.Prefix, i+1), fmt.Sprintf("%s-v%db", opts.Prefix, i+1))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("%v", err)
		}
	}
	for _, h := range hosts {
		t.Logf("engine host %s: %s, containers %s, up in %s", h.Name, h.Addr, h.Pool, h.StartTime.Round(100*time.Millisecond))
	}
	return hosts
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (h *EngineHost) env() []string {
	return []string{"BATON_DOCKER_CURRENT_NAME=" + h.Name, "BATON_DOCKER_CURRENT_POOL=" + h.Pool}
}

func (h *EngineHost) start(ctx context.Context, script, local, remote string) error {
	t0 := time.Now()
	// A namespace left by a killed run would carry the old engine's
	// state; start clean.
	_ = run(ctx, h.env(), script, "stop")
	// The veth goes with its namespace, but the kernel frees a namespace
	// only when nothing refers to it any more: after a swarm's overlay
	// networks that took tens of seconds here, and a new run's "ip link
	// add" would find the name taken. Deleting one end deletes the pair.
	_ = run(ctx, nil, "ip", "link", "del", local)
	h.veth = local
	if err := run(ctx, h.env(), script, "start"); err != nil {
		return fmt.Errorf("engine host %s: %w", h.Name, err)
	}
	h.StartTime = time.Since(t0)
	ns := "/var/run/netns/" + h.Name
	steps := [][]string{
		// The veth's namespace end is moved in at creation; deleting the
		// namespace deletes the pair.
		{"ip", "link", "add", local, "type", "veth", "peer", "name", remote, "netns", h.Name},
		{"ip", "addr", "add", h.LocalAddr + "/30", "dev", local},
		{"ip", "link", "set", local, "up"},
		{"ip", "-n", h.Name, "addr", "add", h.Addr + "/30", "dev", remote},
		{"ip", "-n", h.Name, "link", "set", remote, "up"},
		// The controller reaches the engine's containers as on a LAN.
		{"ip", "route", "replace", h.Pool, "via", h.Addr},
		// Docker's isolation rules drop forwarded traffic into its
		// networks (internal ones included); DOCKER-USER comes first.
		{"nsenter", "--net=" + ns, "iptables", "-I", "DOCKER-USER", "-i", remote, "-j", "ACCEPT"},
		{"nsenter", "--net=" + ns, "iptables", "-I", "DOCKER-USER", "-o", remote, "-j", "ACCEPT"},
		// Containers answer the bridge's address, which is on every one of
		// their networks (an internal one has no route back otherwise).
		{"nsenter", "--net=" + ns, "iptables", "-t", "nat", "-I", "POSTROUTING", "-s", h.LocalAddr, "!", "-o", remote, "-j", "MASQUERADE"},
	}
	for _, s := range steps {
		if err := run(ctx, nil, s[0], s[1:]...); err != nil {
			return fmt.Errorf("engine host %s: %w", h.Name, err)
		}
	}
	cli, err := client.NewClientWithOpts(client.WithHost(h.Socket), client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("engine host %s: %w", h.Name, err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		_ = cli.Close()
		return fmt.Errorf("engine host %s: %w", h.Name, err)
	}
	h.Client = cli
	return nil
}

func (h *EngineHost) stop(t TB, script string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
	defer cancel()
	if h.Client != nil {
		_ = h.Client.Close()
	}
	_ = run(ctx, nil, "ip", "route", "del", h.Pool, "via", h.Addr)
	if err := run(ctx, h.env(), script, "stop"); err != nil {
		t.Logf("stopping engine host %s: %v", h.Name, err)
	}
	if h.veth != "" {
		// Usually gone with the namespace; not yet when the kernel keeps
		// the namespace a while (see start).
		_ = run(ctx, nil, "ip", "link", "del", h.veth)
	}
}

// ForwardLoopback makes 127.0.0.1:port in the host's namespace reach
// 127.0.0.1:port in the test's (a registry of the test's, say): the
// engine then pulls from it as from a registry on its own loopback, over
// plain HTTP with no insecure-registry setting. It stops with the test.
func (h *EngineHost) ForwardLoopback(t TB, port int) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := run(t.Context(), nil, "ip", "-n", h.Name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("engine host %s: %v", h.Name, err)
	}
	ln, err := listenInNetns("/var/run/netns/"+h.Name, addr)
	if err != nil {
		t.Fatalf("engine host %s: forwarding %s: %v", h.Name, addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go Forward(ln, addr, 5*time.Second)
}

// Forward accepts on ln until it is closed and copies each connection both
// ways to a fresh dial of addr, passing half-closes on: a userland relay
// reduced to its copy, for tests.
func Forward(ln net.Listener, addr string, dialTimeout time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.DialTimeout("tcp", addr, dialTimeout)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(u, c)
				_ = u.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(c, u)
			_ = c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// listenInNetns listens on addr in the network namespace at path: the
// socket is made by a thread that entered it, and keeps that namespace
// when used from any other. The thread is never given back (it exits with
// its goroutine), so no other goroutine runs in that namespace.
func listenInNetns(path, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with this goroutine
		f, err := os.Open(path)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("entering %s: %w", path, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}
