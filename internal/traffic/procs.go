package traffic

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/baton-sh/baton/internal/kernelpath"
	"github.com/baton-sh/baton/internal/procnet"
)

// workerSet maps nginx worker PIDs to their master's PID (0 when unknown).
// A host can run several nginx masters (a second site, tests running side by
// side): a reload concerns one of them, and only its workers say whether the
// reload took effect and when the old ones are gone.
type workerSet map[int]int

// hasNew reports whether s holds a PID that before does not.
func (s workerSet) hasNew(before workerSet) bool {
	for pid := range s {
		if _, ok := before[pid]; !ok {
			return true
		}
	}
	return false
}

// hasAny reports whether s and other share a PID.
func (s workerSet) hasAny(other workerSet) bool {
	for pid := range s {
		if _, ok := other[pid]; ok {
			return true
		}
	}
	return false
}

// reloaded returns the workers in before of a master that has reloaded by
// now: it has a new worker, and none of its workers from before is live. Nil
// when no master has. Workers of other masters do not matter: they neither
// confirm nor hold up this reload.
func (s workerSet) reloaded(before workerSet) workerSet {
	masters := map[int]bool{}
	for _, m := range before {
		masters[m] = true
	}
	for m := range masters {
		fresh, oldLeft := false, false
		for pid, pm := range s {
			if pm != m {
				continue
			}
			if _, ok := before[pid]; ok {
				oldLeft = true
			} else {
				fresh = true
			}
		}
		if fresh && !oldLeft {
			old := workerSet{}
			for pid, pm := range before {
				if pm == m {
					old[pid] = pm
				}
			}
			return old
		}
	}
	return nil
}

const (
	workerTitle  = "nginx: worker process"
	shuttingDown = "is shutting down"
	procRoot     = "/proc"
)

func workersFromTop(titles []string, procs [][]string) workerSet {
	return topWorkers(titles, procs, false)
}

func allWorkersFromTop(titles []string, procs [][]string) workerSet {
	return topWorkers(titles, procs, true)
}

func topWorkers(titles []string, procs [][]string, includeExiting bool) workerSet {
	pidCol, ppidCol, cmdCol := -1, -1, -1
	for i, t := range titles {
		switch t {
		case "PPID":
			ppidCol = i
		case "PID":
			pidCol = i
		case "CMD", "COMMAND":
			cmdCol = i
		}
	}
	out := workerSet{}
	if pidCol < 0 || cmdCol < 0 {
		return out
	}
	for _, p := range procs {
		if len(p) <= pidCol || len(p) <= cmdCol {
			continue
		}
		if !isWorker(p[cmdCol], includeExiting) {
			continue
		}
		pid, err := strconv.Atoi(p[pidCol])
		if err != nil {
			continue
		}
		out[pid] = 0
		if ppidCol >= 0 && len(p) > ppidCol {
			out[pid], _ = strconv.Atoi(p[ppidCol])
		}
	}
	return out
}

func isWorker(cmdline string, includeExiting bool) bool {
	if !strings.HasPrefix(cmdline, workerTitle) {
		return false
	}
	return includeExiting || !strings.Contains(cmdline, shuttingDown)
}

// hostWorkers lists the live workers of nginx masters in this process's PID
// namespace: the host's nginx, not one inside a container (whose processes
// the host's /proc also shows).
func hostWorkers() (workerSet, error) { return scanHostWorkers(false) }

func hostAllWorkers() (workerSet, error) { return scanHostWorkers(true) }

func scanHostWorkers(includeExiting bool) (workerSet, error) {
	self, err := os.Readlink(filepath.Join(procRoot, "self", "ns", "pid"))
	if err != nil {
		return nil, fmt.Errorf("reading this process's PID namespace: %w", err)
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	out := workerSet{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil || !isWorker(strings.TrimRight(strings.ReplaceAll(string(cmd), "\x00", " "), " "), includeExiting) {
			continue
		}
		ns, err := os.Readlink(filepath.Join(procRoot, e.Name(), "ns", "pid"))
		if err != nil || ns != self {
			continue
		}
		out[pid] = parentPID(pid)
	}
	return out, nil
}

// parentPID reads a process's parent from /proc/PID/stat (0 if it cannot).
func parentPID(pid int) int {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// establishedFrom is kernelpath.EstablishedFrom on this host's /proc.
func establishedFrom(pid, port int, from netip.Addr) (n int, ok bool) {
	return kernelpath.EstablishedFrom(procRoot, pid, port, from)
}

// establishedConns counts the TCP connections in state ESTABLISHED on local
// port in the network namespace of process pid (a container's main process),
// read from /proc/<pid>/net/tcp{,6}. ok is false when the table cannot be read
// (baton not on the host, or not root).
func establishedConns(pid, port int) (n int, ok bool) {
	if port <= 0 || port > 65535 {
		return 0, false
	}
	return procnet.CountEstablished(procRoot, pid, func(c procnet.Conn) bool { return c.Local.Port() == uint16(port) })
}
