package traffic

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/dockerctl"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/kernelpath"
)

// KernelHelperName is the kernel path's helper container on an engine's
// host that is another machine (see kernelpath.Helper): one per engine,
// shared by its services, removed with the last kernel path there.
const KernelHelperName = "baton-kernelpath"

// RoleKernelHelper is the helper container's baton.role.
const RoleKernelHelper = "kernel-helper"

// kernelRules is what the kernel path needs of the firewall its route is
// in: this host's or an nginx container's (*kernelpath.Table), or an
// engine's host on another machine (kernelpath.Helper).
type kernelRules interface {
	Route(ctx context.Context, r kernelpath.Route) error
	Bypass(ctx context.Context, service string) error
	Target(ctx context.Context, service string) (string, error)
	Connections(ctx context.Context, service string) (uint64, error)
}

// remoteKernel reaches the firewall of an engine's host that is another
// machine, through the helper container there.
type remoteKernel struct {
	eng   Engine
	image string // the helper's image; "" for baton's own, found once
}

// wantImage is the image the helper runs: the one given, or baton's own,
// made on the engine if need be (and kept, so a deploy looks once).
func (r *remoteKernel) wantImage(ctx context.Context) (string, error) {
	if r.image != "" {
		return r.image, nil
	}
	img, err := r.eng.EnsureSelfImage(ctx)
	if err == nil {
		r.image = img
	}
	return img, err
}

// helper returns the Helper, making its container first when make is set;
// without it and without the container, ok is false. A container of that
// name is used only if it carries the helper's role and runs in the host's
// network and PID namespaces with the host's root at kernelpath.HelperRoot,
// as create makes it: otherwise its answers would be of another
// namespace's rules. One of another image (an earlier baton's, which may
// not know every verb) is replaced before a route is set.
func (r *remoteKernel) helper(ctx context.Context, make bool) (h kernelpath.Helper, ok bool, err error) {
	c, err := r.eng.ContainerInspect(ctx, KernelHelperName)
	if err == nil && (c.Config == nil || c.Config.Labels[deploy.LabelRole] != RoleKernelHelper) {
		// Something else has the name: never exec into it as if it
		// were baton's, never remove it.
		return h, false, deploy.Classify(deploy.ErrInvalid, "container %s on the engine's host is not baton's kernel path helper; rename or remove it", KernelHelperName)
	}
	if err == nil {
		stale := !helperShaped(c)
		if !stale && make {
			want, werr := r.wantImage(ctx)
			if werr != nil {
				return h, false, werr
			}
			img, ierr := r.eng.ImageInspect(ctx, want)
			if ierr != nil {
				return h, false, fmt.Errorf("inspecting image %s: %w", want, ierr)
			}
			stale = c.Image != img.ID
		}
		if stale && !make {
			return h, false, fmt.Errorf("the kernel path's helper %s on the engine's host is not as baton makes it; the next deploy with --kernel-path replaces it", KernelHelperName)
		}
		if stale {
			if err := r.eng.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
				return h, false, fmt.Errorf("replacing the kernel path's helper %s: %w", KernelHelperName, err)
			}
			c, err = r.eng.ContainerInspect(ctx, KernelHelperName)
		}
	}
	switch {
	case errdefs.IsNotFound(err):
		if !make {
			return h, false, nil
		}
		if err := r.create(ctx); err != nil {
			return h, false, err
		}
	case err != nil:
		return h, false, fmt.Errorf("inspecting the kernel path's helper %s: %w", KernelHelperName, err)
	case c.State == nil || !c.State.Running:
		if err := r.eng.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			return h, false, fmt.Errorf("starting the kernel path's helper %s: %w", KernelHelperName, err)
		}
	}
	eng := r.eng
	return kernelpath.Helper{Binary: dockerctl.SelfBinary, Exec: func(ctx context.Context, argv []string) (string, string, int, error) {
		res, err := eng.Exec(ctx, KernelHelperName, argv)
		return res.Stdout, res.Stderr, res.ExitCode, err
	}}, true, nil
}

// helperShaped reports whether c is in the host's network and PID
// namespaces with the host's root where the helper reads it.
func helperShaped(c container.InspectResponse) bool {
	h := c.HostConfig
	return h != nil && h.NetworkMode.IsHost() && h.PidMode.IsHost() && slices.Contains(h.Binds, helperRootBind)
}

// helperRootBind is the helper's mount of the host's root.
const helperRootBind = "/:" + kernelpath.HelperRoot + ":ro"

// create makes the helper container: baton's own image, in the host's
// network namespace (whose firewall it changes) and PID namespace (whose
// containers' connection tables it reads), with the host's root read-only
// at kernelpath.HelperRoot (whose iptables it runs) and the host's
// /run/baton (the kernel path's lock, shared with a baton running on that
// host). It gets NET_ADMIN and NET_RAW for iptables, SYS_CHROOT to run
// the host's, and nothing else: not SYS_PTRACE, which /proc/PID/net/tcp
// does not need (measured) and which, with the host's PIDs, would let it
// read every process's environment. Its own root filesystem is read-only. It only waits: baton
// runs each verb in it with docker exec, so nothing an image or a caller
// supplies becomes its command.
func (r *remoteKernel) create(ctx context.Context) error {
	img, err := r.wantImage(ctx)
	if err != nil {
		return err
	}
	cfg := &container.Config{
		Image: img,
		Cmd:   []string{kernelpath.HelperCommandName, "wait"},
		User:  "0",
		Labels: map[string]string{
			deploy.LabelManaged: "true",
			deploy.LabelRole:    RoleKernelHelper,
		},
	}
	host := &container.HostConfig{
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		NetworkMode:    network.NetworkHost,
		PidMode:        "host",
		Binds:          []string{helperRootBind, "/run/baton:/run/baton"},
		UsernsMode:     "host", // a daemon with userns-remap refuses the host's namespaces otherwise
		CapDrop:        []string{"ALL"},
		CapAdd:         []string{"NET_ADMIN", "NET_RAW", "SYS_CHROOT"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		ReadonlyRootfs: true,
	}
	pids := int64(64)
	host.PidsLimit = &pids
	created, err := r.eng.ContainerCreate(ctx, cfg, host, nil, nil, KernelHelperName)
	if errdefs.IsConflict(err) {
		// Another baton made it a moment ago: theirs serves.
		c, ierr := r.eng.ContainerInspect(ctx, KernelHelperName)
		if ierr == nil && c.Config != nil && c.Config.Labels[deploy.LabelRole] == RoleKernelHelper && helperShaped(c) {
			if c.State != nil && c.State.Running {
				return nil
			}
			return r.eng.ContainerStart(ctx, c.ID, container.StartOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("creating the kernel path's helper %s: %w", KernelHelperName, err)
	}
	if err := r.eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		_ = r.eng.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		return fmt.Errorf("starting the kernel path's helper %s: %w", KernelHelperName, err)
	}
	return nil
}

// errNoHelper says the engine's host has no helper container, so no rule
// of baton's (the helper goes only with the last of them).
var errNoHelper = errors.New("no kernel path helper on the engine's host")

// rules is the helper's kernelRules, made first when make is set.
func (r *remoteKernel) rules(ctx context.Context, make bool) (kernelRules, error) {
	h, ok, err := r.helper(ctx, make)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNoHelper
	}
	return h, nil
}

// has reports whether the service has a rule on the engine's host. A host
// without the helper has none of baton's rules (the helper goes only with
// the last of them).
func (r *remoteKernel) has(ctx context.Context, service string) (bool, error) {
	h, ok, err := r.helperFor(ctx, service)
	if err != nil || !ok {
		return false, err
	}
	return h.Has(ctx, service)
}

// helperFor is the helper, made if need be when the service may have
// rules on the engine's host: its kernel network exists (every route's
// SNAT goes out on it), so a helper removed by hand, or between another
// baton's last removal and its route, does not read as no rules. A host
// without that network holds none of the service's, and gets no helper.
func (r *remoteKernel) helperFor(ctx context.Context, service string) (kernelpath.Helper, bool, error) {
	h, ok, err := r.helper(ctx, false)
	if err != nil || ok {
		return h, ok, err
	}
	netName := dockerctl.KernelNetwork(service)
	if _, err := r.eng.NetworkInspect(ctx, netName, network.InspectOptions{}); errdefs.IsNotFound(err) {
		return h, false, nil
	} else if err != nil {
		return h, false, fmt.Errorf("inspecting network %s: %w", netName, err)
	}
	return r.helper(ctx, true)
}

// remove takes the service's kernel path away on the engine's host, and
// the helper with the last one.
func (r *remoteKernel) remove(ctx context.Context, service string) error {
	h, ok, err := r.helperFor(ctx, service)
	if err != nil || !ok {
		return err
	}
	empty, err := h.Remove(ctx, service)
	if err != nil || !empty {
		return err
	}
	// By ID, the one asked: a helper another baton made since is not this
	// one. (A route another baton set between the answer and this
	// removal keeps its rules; its kernel network makes the next look
	// make a helper again.)
	c, err := r.eng.ContainerInspect(ctx, KernelHelperName)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspecting the kernel path's helper %s: %w", KernelHelperName, err)
	}
	if err := r.eng.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing the kernel path's helper %s: %w", KernelHelperName, err)
	}
	return nil
}

// established counts the kernel's connections to a container of the
// engine's host, from its PID namespace: Helper.Established. A helper that
// is not there is a look that failed, not a container that is gone.
func (r *remoteKernel) established(ctx context.Context, pid, port int, from netip.Addr) (int, bool, error) {
	h, ok, err := r.helper(ctx, false)
	if err == nil && !ok {
		err = errNoHelper
	}
	if err != nil {
		return 0, false, err
	}
	return h.Established(ctx, pid, port, from)
}

// gatewayOn is the gateway of network nw on target's subnet: the kernel
// path's source on an engine's host that is another machine, whose
// interfaces baton cannot look at (the helper checks it there).
func gatewayOn(nw network.Inspect, target netip.Addr) (netip.Addr, error) {
	for _, c := range nw.IPAM.Config {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !p.Contains(target) {
			continue
		}
		gw, err := netip.ParseAddr(c.Gateway)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("network %s has gateway %q on %s: %w", nw.Name, c.Gateway, c.Subnet, err)
		}
		return gw, nil
	}
	return netip.Addr{}, errors.New("network " + nw.Name + " has no subnet holding " + target.String())
}
