package traffic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/baton-sh/baton/internal/atomicfile"
	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/redact"
)

// nginxControl owns a service's upstream file and tells nginx to reload it.
type nginxControl struct {
	eng       Engine
	file      string
	reloadCmd string // nginx on the host
	container string // nginx in a container
	log       *slog.Logger
	notify    func(string)
	// reloadTimeout bounds the reload command and the wait for nginx's
	// new workers.
	reloadTimeout time.Duration
	// checked, if set, runs between the path check and the write: tests
	// use it to swap a directory for a link, as someone racing baton could.
	checked func()
	// throughContainer: the engine (and so the nginx container) is on
	// another machine, where file is; it is read and written through the
	// container's bind mount of its directory (see upstreamfile_remote.go).
	throughContainer bool
	// shared: the file lists the relays of every host of a rollout (see
	// Factory.SharedUpstream), and says so in its first line.
	shared bool
}

func newNginxControl(eng Engine, s deploy.Settings, log *slog.Logger, notify func(string)) *nginxControl {
	return &nginxControl{eng: eng, file: s.NginxUpstream, reloadCmd: s.NginxReload, container: s.NginxContainer, log: log, notify: notify, reloadTimeout: 30 * time.Second}
}

// sharedHeader begins an upstream file a rollout across hosts wrote: a
// deploy on one host only would drop the other hosts' relays from it, so
// such a deploy is refused (see checkNotShared).
const sharedHeader = "# Written by baton for a rollout across hosts"

// upstreamContent is the file baton writes: only server lines, so the user's
// config stays `upstream web { include <file>; }`. max_fails=0 keeps nginx
// from ever marking the only server down after a failed attempt.
func upstreamContent(servers []string, shared bool) []byte {
	var b bytes.Buffer
	if shared {
		b.WriteString(sharedHeader + ": it lists every host's relay; deploy with --hosts, never on one host alone.\n")
	} else {
		b.WriteString("# Written by baton: it rewrites this file on every deploy; edit the deploy, not this file.\n")
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "server %s max_fails=0;\n", s)
	}
	return b.Bytes()
}

// apply makes the upstream file list servers and, when that changed it,
// reloads nginx and checks the reload took effect. On failure the previous
// file is put back, so nginx keeps routing where it did. It returns the
// workers that served before the reload (nil when nothing changed). An
// nginx container is first attached to nets, the service networks the
// servers are on.
func (n *nginxControl) apply(ctx context.Context, servers []string, nets ...string) (oldWorkers workerSet, err error) {
	if n.container != "" {
		if err := n.ensureContainerOn(ctx, nets); err != nil {
			return nil, err
		}
	}
	want := upstreamContent(servers, n.shared)
	if n.throughContainer {
		return n.applyThroughContainer(ctx, want)
	}
	have, err := atomicfile.ReadNoFollow(n.file)
	existed := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading upstream file %s: %w", n.file, err)
	}
	if existed && bytes.Equal(have, want) {
		return nil, nil
	}
	// Checked at resolve time too; again here, right before writing as
	// root, in case a link appeared since.
	if err := deploy.CheckUpstreamFS(n.file); err != nil {
		return nil, err
	}
	if n.checked != nil {
		n.checked()
	}
	before, err := n.workers(ctx)
	if err != nil {
		return nil, err
	}
	// The check above can be raced by whoever can write to a directory on
	// the path (one shared with an nginx container, say): the write itself
	// follows no link, from / down, so a link that appeared since is
	// refused rather than written through as root.
	if err := atomicfile.WriteNoFollow(n.file, want, 0o644, 0o755); err != nil {
		return nil, classifyLink(fmt.Errorf("upstream file: %w", err))
	}
	n.log.Debug("upstream file written", "file", n.file, "servers", strings.Join(servers, " "))
	old, err := n.reload(ctx, before)
	if err != nil {
		n.restore(ctx, existed, have)
		return nil, err
	}
	return old, nil
}

// checkNotShared refuses (bad input, before anything changed) a deploy on
// one host of a service whose upstream file a rollout across hosts wrote:
// it would rewrite the file with this host's relay only, and nginx would
// stop sending traffic to the other hosts.
func (n *nginxControl) checkNotShared(service string) error {
	if n.shared || n.file == "" || n.container != "" || n.throughContainer {
		return nil
	}
	have, err := atomicfile.ReadNoFollow(n.file)
	if err != nil || !bytes.HasPrefix(have, []byte(sharedHeader)) {
		return nil // no file yet, or one of this host's: the write checks the rest
	}
	return deploy.Classify(deploy.ErrInvalid, "service %s: upstream file %s lists the relays of several hosts (written by a rollout): deploy it with --hosts FILE (or a --context for each host), which keeps every host's relay in it", service, n.file)
}

// classifyLink makes a refused link bad input (exit 2), like the check
// before the write.
func classifyLink(err error) error {
	if errors.Is(err, atomicfile.ErrSymlink) {
		return deploy.Classify(deploy.ErrInvalid, "%v", err)
	}
	return err
}

// restore puts the previous upstream file back after a failed reload, and
// reloads again so nginx agrees with the file.
func (n *nginxControl) restore(ctx context.Context, existed bool, prev []byte) {
	var err error
	if existed {
		err = atomicfile.WriteNoFollow(n.file, prev, 0o644, 0o755)
	} else {
		err = atomicfile.RemoveNoFollow(n.file)
	}
	if err != nil {
		n.log.Warn("restoring the upstream file", "file", n.file, "error", err)
		return
	}
	if before, err := n.workers(ctx); err == nil {
		if _, err := n.reload(ctx, before); err != nil {
			n.log.Warn("reloading nginx after restoring the upstream file", "file", n.file, "error", err)
		}
	}
}

// reload tells nginx to reload and waits until a new worker runs and every
// worker from before is gone or shutting down (it has closed its listening
// sockets), so no new request can use the old configuration. New workers are
// also the sign that nginx accepted the configuration: nginx answers a
// reload of a broken one by logging an error and keeping its old workers,
// and the reload command itself exits 0 either way. It returns the workers
// from before of the nginx master that reloaded (others, of another nginx on
// the host, are not waited for).
func (n *nginxControl) reload(ctx context.Context, before workerSet) (workerSet, error) {
	ctx, cancel := context.WithTimeout(ctx, n.reloadTimeout)
	defer cancel()
	if n.container != "" {
		if err := n.testContainerConfig(ctx); err != nil {
			return nil, err
		}
		if err := n.eng.ContainerKill(ctx, n.container, "HUP"); err != nil {
			return nil, fmt.Errorf("sending HUP to nginx container %s: %w", n.container, err)
		}
	} else {
		argv, err := deploy.SplitCommand(n.reloadCmd)
		if err != nil {
			return nil, fmt.Errorf("nginx reload command %q: %w", n.reloadCmd, err)
		}
		// No shell: the command's words are the program and its arguments.
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = redact.Environ(os.Environ())
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("nginx reload command %q failed: %v: %s", n.reloadCmd, err, lastLine(out))
		}
	}
	if len(before) == 0 {
		n.log.Warn("no nginx workers visible; cannot confirm the reload took effect", "nginx", n.where())
		return before, nil
	}
	for {
		now, err := n.workers(ctx)
		if err != nil {
			return nil, err
		}
		if old := now.reloaded(before); old != nil {
			return old, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nginx (%s) did not start new workers within %s after the reload; is the configuration valid? (nginx -t)", n.where(), n.reloadTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// testContainerConfig runs `nginx -t` in the nginx container when it can, so
// a broken configuration fails the deploy with nginx's own message.
func (n *nginxControl) testContainerConfig(ctx context.Context) error {
	res, err := n.eng.Exec(ctx, n.container, []string{"nginx", "-t", "-q"})
	if err != nil {
		n.log.Debug("cannot run nginx -t in the container; relying on the worker check", "container", n.container, "error", err)
		return nil
	}
	if res.ExitCode == 126 || res.ExitCode == 127 {
		return nil // no nginx on PATH in that image
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("nginx in container %s rejects its configuration: %s", n.container, lastLine([]byte(res.Stderr+res.Stdout)))
	}
	return nil
}

// workers lists nginx's current (not shutting down) worker processes.
func (n *nginxControl) workers(ctx context.Context) (workerSet, error) {
	if n.container != "" {
		top, err := n.eng.ContainerTop(ctx, n.container, nil)
		if err != nil {
			return nil, fmt.Errorf("listing processes of nginx container %s: %w", n.container, err)
		}
		return workersFromTop(top.Titles, top.Processes), nil
	}
	return hostWorkers()
}

// allWorkers lists every nginx worker, including those shutting down.
func (n *nginxControl) alive(ctx context.Context, set workerSet) (int, error) {
	var procs workerSet
	var err error
	if n.container != "" {
		top, terr := n.eng.ContainerTop(ctx, n.container, nil)
		if terr != nil {
			return 0, fmt.Errorf("listing processes of nginx container %s: %w", n.container, terr)
		}
		procs = allWorkersFromTop(top.Titles, top.Processes)
	} else {
		procs, err = hostAllWorkers()
		if err != nil {
			return 0, err
		}
	}
	count := 0
	for pid := range set {
		if _, ok := procs[pid]; ok {
			count++
		}
	}
	return count, nil
}

// ensureContainerOn attaches the nginx container to nets, the networks of
// the services it serves, so it reaches their app containers and relays
// whatever its own networks are. Attaching an internal network does not
// restart or republish it.
func (n *nginxControl) ensureContainerOn(ctx context.Context, nets []string) error {
	if len(nets) == 0 {
		return nil
	}
	c, err := n.eng.ContainerInspect(ctx, n.container)
	if err != nil {
		return fmt.Errorf("nginx container %s: %w", n.container, err)
	}
	if !c.State.Running {
		return fmt.Errorf("nginx container %s is not running", n.container)
	}
	for _, netName := range nets {
		if _, ok := c.NetworkSettings.Networks[netName]; ok {
			continue
		}
		if err := n.eng.NetworkConnect(ctx, netName, c.ID, &network.EndpointSettings{}); err != nil {
			return fmt.Errorf("attaching nginx container %s to network %s: %w", n.container, netName, err)
		}
		n.notify(fmt.Sprintf("attached nginx container %s to network %s", n.container, netName))
	}
	return nil
}

func (n *nginxControl) where() string {
	if n.container != "" {
		return "container " + n.container
	}
	return "host"
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
