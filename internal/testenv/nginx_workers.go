package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// nginxWorkers returns the children of an nginx master, by pid, with their
// process titles ("nginx: worker process", "… is shutting down"). It reads
// the host's /proc, which also shows a container's processes when the
// daemon shares the host's PID namespace, as it does on baton's machines.
func nginxWorkers(master int) (map[int]string, error) {
	if _, err := os.Stat("/proc/" + strconv.Itoa(master)); err != nil {
		return nil, fmt.Errorf("nginx master pid %d: %w", master, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	workers := map[int]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it exited while we looked
		}
		// "pid (comm) state ppid …"; comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(master) {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		workers[pid] = strings.TrimRight(strings.ReplaceAll(string(cmdline), "\x00", " "), " ")
	}
	return workers, nil
}

// waitReloaded waits until the master runs a worker that was not in before
// and every worker of before has exited or is shutting down (it closes its
// listening sockets as it retitles itself). There is no event for this, so
// it polls every 10ms.
func waitReloaded(ctx context.Context, master int, before map[int]string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		now, err := nginxWorkers(master)
		if err != nil {
			return fmt.Errorf("waiting for reload: %w", err)
		}
		fresh, oldActive := false, false
		for pid, title := range now {
			_, old := before[pid]
			shutting := strings.Contains(title, "shutting down")
			fresh = fresh || (!old && !shutting)
			oldActive = oldActive || (old && !shutting)
		}
		if fresh && !oldActive {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("reload not done in time (workers before %v, now %v)", before, now)
			}
			return fmt.Errorf("waiting for reload: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
