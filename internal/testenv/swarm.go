package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// Swarm is a Docker Swarm made of engine hosts (StartEngineHosts): the
// first host is its manager, the others join it as workers.
type Swarm struct {
	Hosts   []*EngineHost
	Manager *EngineHost
	// NodeIDs[i] is Hosts[i]'s node ID in the swarm.
	NodeIDs []string
}

// StartSwarm starts opts.N engine hosts and joins them into one swarm:
// swarm init on host 1's veth address, the others join as workers. Each host
// only has a veth to this namespace, so the hosts reach each other (the
// swarm's 2377/tcp, 7946/tcp+udp and the overlay's VXLAN on 4789/udp)
// through it: a route in every host to the test's 10.<Net>.0.0/16, and a
// FORWARD rule here for those addresses only (Docker's policy here drops
// forwarded traffic), removed when the test ends. Nothing is left: stopping
// an engine removes its data root and with it the swarm's state.
func StartSwarm(t TB, opts EngineHostsOpts) *Swarm {
	t.Helper()
	hosts := StartEngineHosts(t, opts)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(string(b)) != "1" {
		// Turning it on is a host-wide change: not a test's to make.
		t.Fatalf("swarm across engine hosts: this machine does not forward IPv4 (/proc/sys/net/ipv4/ip_forward: %q, %v)", b, err)
	}
	lan := fmt.Sprintf("10.%d.0.0/16", opts.Net)
	rule := forwardRule(opts.Net)
	iptables := func(op string) func([]string) error {
		return func(rule []string) error { return run(ctx, nil, "iptables", append([]string{op}, rule...)...) }
	}
	// A run killed before its cleanup left its rule: drop every copy (and
	// one an older harness inserted without the tag) before inserting.
	deleteRule(iptables("-D"), rule)
	deleteRule(iptables("-D"), untaggedForwardRule(opts.Net))
	if err := iptables("-I")(rule); err != nil {
		t.Fatalf("swarm across engine hosts: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if n := deleteRule(func(rule []string) error { return run(ctx, nil, "iptables", append([]string{"-D"}, rule...)...) }, rule); n == 0 {
			t.Errorf("swarm across engine hosts: the FORWARD rule %s was gone before the cleanup", strings.Join(rule, " "))
		}
	})
	for _, h := range hosts {
		if err := run(ctx, nil, "ip", "-n", h.Name, "route", "replace", lan, "via", h.LocalAddr); err != nil {
			t.Fatalf("swarm across engine hosts: %v", err)
		}
	}
	s := &Swarm{Hosts: hosts, Manager: hosts[0], NodeIDs: make([]string, len(hosts))}
	m := s.Manager
	id, err := m.Client.SwarmInit(ctx, swarm.InitRequest{ListenAddr: m.Addr + ":2377", AdvertiseAddr: m.Addr})
	if err != nil {
		t.Fatalf("engine host %s: docker swarm init: %v", m.Name, err)
	}
	s.NodeIDs[0] = id
	sw, err := m.Client.SwarmInspect(ctx)
	if err != nil {
		t.Fatalf("engine host %s: swarm inspect: %v", m.Name, err)
	}
	for i, h := range hosts[1:] {
		if err := h.Client.SwarmJoin(ctx, swarm.JoinRequest{
			ListenAddr: h.Addr + ":2377", AdvertiseAddr: h.Addr,
			RemoteAddrs: []string{m.Addr + ":2377"}, JoinToken: sw.JoinTokens.Worker,
		}); err != nil {
			t.Fatalf("engine host %s: docker swarm join %s: %v", h.Name, m.Addr, err)
		}
		info, err := h.Client.Info(ctx)
		if err != nil {
			t.Fatalf("engine host %s: info: %v", h.Name, err)
		}
		s.NodeIDs[i+1] = info.Swarm.NodeID
	}
	// The manager counts a worker once its heartbeats arrive.
	for {
		nodes, err := m.Client.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			t.Fatalf("engine host %s: node list: %v", m.Name, err)
		}
		ready := 0
		for _, n := range nodes {
			if n.Status.State == swarm.NodeStateReady {
				ready++
			}
		}
		if ready == len(hosts) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("swarm on %s: %d of %d nodes ready after 2 minutes", m.Name, ready, len(hosts))
		case <-time.After(250 * time.Millisecond):
		}
	}
	return s
}

// NodeName returns the engine host a swarm node ID belongs to ("" if none).
func (s *Swarm) NodeName(id string) string {
	for i, n := range s.NodeIDs {
		if n == id {
			return s.Hosts[i].Name
		}
	}
	return ""
}

// DNSRRServiceOpts says what StartDNSRRService runs.
type DNSRRServiceOpts struct {
	Name     string // the service; its overlay network is <Name>-net
	Image    string
	Replicas uint64
	// ResolverValid is how long nginx keeps tasks.<Name>'s addresses
	// (default 1s).
	ResolverValid time.Duration
	// PublishIP is where nginx's port 80 is published (default 127.0.0.1):
	// an engine host's Addr for a test in this namespace.
	PublishIP string
}

// DNSRRService is a Swarm service reached the way this kernel allows (no
// IPVS, so neither the routing mesh nor VIPs): endpoint mode dnsrr on an
// attachable overlay network, and an nginx container on that network
// resolving tasks.<service> through Docker's DNS.
type DNSRRService struct {
	ID, Name, Network string
	Nginx             *Nginx
	cli               *client.Client
}

// StartDNSRRService creates the network, the service and nginx on the
// manager cli talks to, waits until every replica runs and nginx answers,
// and removes them when the test ends.
func StartDNSRRService(t TB, cli *client.Client, opts DNSRRServiceOpts) *DNSRRService {
	t.Helper()
	ctx := t.Context()
	s := &DNSRRService{Name: opts.Name, Network: opts.Name + "-net", cli: cli}
	if _, err := cli.NetworkCreate(ctx, s.Network, network.CreateOptions{Driver: "overlay", Attachable: true, Labels: labels(nil)}); err != nil {
		t.Fatalf("overlay network %s: %v", s.Network, err)
	}
	t.Cleanup(func() {
		cctx, cancel := cleanupContext(t)
		defer cancel()
		// The network goes once the tasks' containers are gone.
		for {
			err := cli.NetworkRemove(cctx, s.Network)
			if err == nil || cerrdefs.IsNotFound(err) {
				return
			}
			select {
			case <-cctx.Done():
				t.Logf("network %s: %v", s.Network, err)
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	replicas := opts.Replicas
	resp, err := cli.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: s.Name, Labels: labels(nil)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: opts.Image, Labels: labels(nil)},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.Network}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatalf("service %s: create: %v", s.Name, err)
	}
	s.ID = resp.ID
	t.Cleanup(func() {
		cctx, cancel := cleanupContext(t)
		defer cancel()
		if err := cli.ServiceRemove(cctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Logf("service %s: remove: %v", s.Name, err)
		}
	})
	valid := opts.ResolverValid
	if valid <= 0 {
		valid = time.Second
	}
	s.Nginx = ContainerNginx(t, cli, NginxOpts{
		Network:   s.Network,
		PublishIP: opts.PublishIP,
		Location: `location / {
            resolver 127.0.0.11 valid=` + valid.String() + ` ipv6=off;
            set $tasks tasks.` + s.Name + `;
            proxy_pass http://$tasks:8080;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 1s;
        }`,
	})
	if _, err := s.Tasks(ctx, opts.Image, int(replicas), 2*time.Minute); err != nil {
		t.Fatalf("%v", err)
	}
	WaitHTTP(t, s.Nginx.URL()+"/", time.Minute)
	return s
}

// Tasks waits until n tasks of the service run image and no other task is
// meant to run, and returns the node IDs they run on, one per task.
func (s *DNSRRService) Tasks(ctx context.Context, image string, n int, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", s.ID), filters.Arg("desired-state", "running"))})
		if err != nil {
			return nil, fmt.Errorf("service %s: tasks: %w", s.Name, err)
		}
		var on []string
		for _, tk := range tasks {
			if tk.Status.State == swarm.TaskStateRunning && tk.Spec.ContainerSpec.Image == image {
				on = append(on, tk.NodeID)
			}
		}
		if len(on) == n && len(tasks) == n {
			return on, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("service %s: %d of %d tasks run %s (%d meant to run) after %s", s.Name, len(on), n, image, len(tasks), timeout)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("service %s: %w", s.Name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Image is the image the service's spec names.
func (s *DNSRRService) Image(ctx context.Context) (string, error) {
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, s.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("service %s: inspect: %w", s.Name, err)
	}
	return svc.Spec.TaskTemplate.ContainerSpec.Image, nil
}

// forwardRule is the FORWARD rule that lets a swarm's hosts (10.<net>.0.0/16)
// reach each other through this namespace, tagged with a comment naming the
// net so the next run finds one a killed run left.
func forwardRule(net int) []string {
	lan := fmt.Sprintf("10.%d.0.0/16", net)
	return []string{"FORWARD", "-s", lan, "-d", lan, "-m", "comment", "--comment", fmt.Sprintf("baton-test-10.%d", net), "-j", "ACCEPT"}
}

// untaggedForwardRule is the rule as earlier harnesses inserted it.
func untaggedForwardRule(net int) []string {
	lan := fmt.Sprintf("10.%d.0.0/16", net)
	return []string{"FORWARD", "-s", lan, "-d", lan, "-j", "ACCEPT"}
}

// deleteRule removes every copy of rule with del (iptables -D removes one
// per call and fails once none is left) and says how many it removed.
func deleteRule(del func(rule []string) error, rule []string) int {
	n := 0
	for n < 100 && del(rule) == nil {
		n++
	}
	return n
}
