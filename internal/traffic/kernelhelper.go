package traffic

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/kernelpath"
)

// KernelHelperName is the kernel path's helper container on an engine's
// host that is another machine (see kernelpath.Helper): one per engine,
// shared by its services, removed with the last kernel path there.
const KernelHelperName = "baton-kernelpath"

// RoleKernelHelper is the helper container's baton.role.
const RoleKernelHelper = "kernel-helper"

// selfBinary is where baton's own image holds baton (dockerctl's too).
const selfBinary = "/baton"

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
// without it and without the container, ok is false.
func (r *remoteKernel) helper(ctx context.Context, make bool) (h kernelpath.Helper, ok bool, err error) {
	c, err := r.eng.ContainerInspect(ctx, KernelHelperName)
	if err == nil && make && c.Config != nil && c.Config.Labels[deploy.LabelRole] == RoleKernelHelper {
		// A helper of an earlier baton may not know every verb of this
		// one's: a route is set by the helper of this binary.
		want, werr := r.wantImage(ctx)
		if werr != nil {
			return h, false, werr
		}
		if c.Config.Image != want {
			if err := r.eng.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
				return h, false, fmt.Errorf("replacing the kernel path's helper %s of an earlier baton: %w", KernelHelperName, err)
			}
			_, err = r.eng.ContainerInspect(ctx, KernelHelperName)
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
	case c.Config == nil || c.Config.Labels[deploy.LabelRole] != RoleKernelHelper:
		// Something else has the name: never exec into it as if it
		// were baton's.
		return h, false, deploy.Classify(deploy.ErrInvalid, "container %s on the engine's host is not baton's kernel path helper; rename or remove it", KernelHelperName)
	case c.State == nil || !c.State.Running:
		if err := r.eng.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			return h, false, fmt.Errorf("starting the kernel path's helper %s: %w", KernelHelperName, err)
		}
	}
	eng := r.eng
	return kernelpath.Helper{Binary: selfBinary, Exec: func(ctx context.Context, argv []string) (string, string, int, error) {
		res, err := eng.Exec(ctx, KernelHelperName, argv)
		return res.Stdout, res.Stderr, res.ExitCode, err
	}}, true, nil
}

// create makes the helper container: baton's own image, in the host's
// network namespace (whose firewall it changes) and PID namespace (whose
// containers' connection tables it reads), with the host's root read-only
// at kernelpath.HelperRoot (whose iptables it runs) and the host's
// /run/baton (the kernel path's lock, shared with a baton running on that
// host). It gets NET_ADMIN and NET_RAW for iptables, SYS_CHROOT to run
// the host's, SYS_PTRACE to read other processes' /proc entries, and
// nothing else; its own root filesystem is read-only. It only waits: baton
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
		Binds:          []string{"/:" + kernelpath.HelperRoot + ":ro", "/run/baton:/run/baton"},
		CapDrop:        []string{"ALL"},
		CapAdd:         []string{"NET_ADMIN", "NET_RAW", "SYS_CHROOT", "SYS_PTRACE"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		ReadonlyRootfs: true,
	}
	pids := int64(64)
	host.PidsLimit = &pids
	created, err := r.eng.ContainerCreate(ctx, cfg, host, nil, nil, KernelHelperName)
	if err != nil {
		return fmt.Errorf("creating the kernel path's helper %s: %w", KernelHelperName, err)
	}
	if err := r.eng.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		_ = r.eng.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		return fmt.Errorf("starting the kernel path's helper %s: %w", KernelHelperName, err)
	}
	return nil
}

// rules is the helper's kernelRules, made if need be.
func (r *remoteKernel) rules(ctx context.Context) (kernelRules, error) {
	h, _, err := r.helper(ctx, true)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// has reports whether the service has a rule on the engine's host. A host
// without the helper has none of baton's rules (the helper goes only with
// the last of them).
func (r *remoteKernel) has(ctx context.Context, service string) (bool, error) {
	h, ok, err := r.helper(ctx, false)
	if err != nil || !ok {
		return false, err
	}
	return h.Has(ctx, service)
}

// remove takes the service's kernel path away on the engine's host, and
// the helper with the last one.
func (r *remoteKernel) remove(ctx context.Context, service string) error {
	h, ok, err := r.helper(ctx, false)
	if err != nil || !ok {
		return err
	}
	empty, err := h.Remove(ctx, service)
	if err != nil || !empty {
		return err
	}
	if err := r.eng.ContainerRemove(ctx, KernelHelperName, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing the kernel path's helper %s: %w", KernelHelperName, err)
	}
	return nil
}

// established counts the kernel's connections to a container of the
// engine's host, from its PID namespace.
func (r *remoteKernel) established(ctx context.Context, pid, port int, from netip.Addr) (int, bool) {
	h, ok, err := r.helper(ctx, false)
	if err != nil || !ok {
		return 0, false
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
