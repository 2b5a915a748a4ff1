package traffic

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/deploy"
)

// Nginx moves traffic by rewriting the upstream file to the new container's
// address on its service's network and reloading nginx. The old container leaves
// nginx's rotation at the reload, before it is asked to stop; what nginx's
// reload cannot avoid is closing idle client keep-alive connections in its
// retiring workers, which a client may be reusing at that instant.
type Nginx struct {
	ctl    *nginxControl
	eng    Engine
	svc    deploy.Service
	log    *slog.Logger
	notify func(string)

	mu         sync.Mutex
	oldWorkers workerSet // workers that served before the last switch
}

func (t *Nginx) Mode() string { return "nginx" }

func (t *Nginx) Ensure(ctx context.Context, cur deploy.Endpoint) error {
	if cur.IP == "" {
		return fmt.Errorf("container %s has no address on its service's network", cur.Name)
	}
	svcNet, err := t.eng.EnsureServiceNetwork(ctx, t.svc.Key)
	if err != nil {
		return err
	}
	if _, err := t.ctl.apply(ctx, []string{cur.Addr()}, svcNet); err != nil {
		return err
	}
	legacyLeaver{network: dockerctl.LegacyNetwork, eng: t.eng, log: t.log, notify: t.notify, wait: legacyIdleWait}.leave(ctx, []string{cur.ID})
	return nil
}

func (t *Nginx) Describe(ctx context.Context) (string, error) {
	data, err := os.ReadFile(t.ctl.file)
	if err != nil {
		return "", fmt.Errorf("upstream file: %w", err)
	}
	var servers []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "server" {
			servers = append(servers, strings.TrimSuffix(f[1], ";"))
		}
	}
	return fmt.Sprintf("nginx (%s) via %s -> %s", t.ctl.where(), t.ctl.file, strings.Join(servers, ", ")), nil
}

func (t *Nginx) Switch(ctx context.Context, from, to deploy.Endpoint) error {
	if to.IP == "" {
		return fmt.Errorf("container %s has no address on its service's network", to.Name)
	}
	svcNet, err := t.eng.EnsureServiceNetwork(ctx, t.svc.Key)
	if err != nil {
		return err
	}
	old, err := t.ctl.apply(ctx, []string{to.Addr()}, svcNet)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.oldWorkers = old
	t.mu.Unlock()
	return nil
}

// Drain waits until the nginx workers that ran before the switch have exited
// (they finish their requests, then quit) and the old container has no
// established connection left on the app's port, at most max. Past max it
// returns nil: the old container then gets its graceful stop.
func (t *Nginx) Drain(ctx context.Context, from deploy.Endpoint, max time.Duration) (deploy.DrainReport, error) {
	t.mu.Lock()
	old := t.oldWorkers
	t.mu.Unlock()
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	rep := deploy.DrainReport{Waited: -1}
	for {
		alive, err := t.ctl.alive(ctx, old)
		if err != nil && ctx.Err() == nil {
			return deploy.DrainReport{}, err
		}
		conns, ok := establishedConns(from.PID, from.Port)
		if ok && rep.Waited < 0 {
			rep.Counted, rep.Waited = true, conns
		}
		if alive == 0 && (conns == 0 || !ok) {
			rep.Waited = nonNegative(rep.Waited)
			rep.Duration = time.Since(t0)
			return rep, nil
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				t.log.Warn("drain time over; stopping the old container with requests possibly in flight", "container", from.Name, "old_workers", alive, "connections", conns)
				rep.Waited = nonNegative(rep.Waited)
				if ok {
					rep.Cut = conns
				}
				rep.Duration = time.Since(t0)
				return rep, nil
			}
			return deploy.DrainReport{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (t *Nginx) Finish(context.Context, deploy.Endpoint, deploy.Endpoint) error { return nil }

func nonNegative(n int) int {
	if n < 0 {
		return 0
	}
	return n
}
