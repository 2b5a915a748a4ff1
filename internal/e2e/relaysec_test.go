package e2e

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/testenv"
	"github.com/baton-sh/baton/internal/traffic"
)

// TestRelayContainerHardened deploys through the relay and checks what the
// relay container was given, in its configuration and in the running
// process: no capabilities, no way to gain privileges, a read-only root, a
// user that is not root, and memory and task limits. The relay still
// serves (positive control).
func TestRelayContainerHardened(t *testing.T) {
	e := newEnv(t)
	v1 := e.version("v1", "v1", nil)
	v2 := e.version("v2", "v2", nil)
	name := testenv.UniqueName("web-")
	e.runWeb(name, v1)
	ng := testenv.HostNginx(t, testenv.NginxOpts{UpstreamFile: t.TempDir() + "/web.conf", InitialServers: []string{testenv.ContainerIP(t, e.cli, name, e.net) + ":8080"}})
	e.mustDeploy("--image", v2, "--nginx-upstream", ng.UpstreamFile(), "--nginx-reload", ng.ReloadCommand(), "--http-probe", "/healthz", name)
	assertServes(t, ng.URL()+"/", "v2")

	rc := e.inspect(traffic.RelayName(name))
	h := rc.HostConfig
	switch {
	case len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL":
		t.Errorf("relay cap-drop %v, want [ALL]", h.CapDrop)
	case len(h.CapAdd) != 0:
		t.Errorf("relay cap-add %v, want none", h.CapAdd)
	case !contains(h.SecurityOpt, "no-new-privileges:true"):
		t.Errorf("relay security options %v, want no-new-privileges", h.SecurityOpt)
	case !h.ReadonlyRootfs:
		t.Error("relay root filesystem is writable")
	case h.Memory <= 0 || h.Memory > 256<<20 || h.MemorySwap != h.Memory:
		t.Errorf("relay memory limit %d (swap %d), want a limit of at most 256 MiB and no swap", h.Memory, h.MemorySwap)
	case h.PidsLimit == nil || *h.PidsLimit <= 0 || *h.PidsLimit > 1024:
		t.Errorf("relay pids limit %v, want a limit", h.PidsLimit)
	case h.Privileged:
		t.Error("relay is privileged")
	case rc.Config.User == "" || strings.HasPrefix(rc.Config.User, "0") || rc.Config.User == "root":
		t.Errorf("relay user %q, want a non-root user", rc.Config.User)
	}

	// What the kernel says about the running relay.
	st := procStatus(t, rc.State.Pid)
	for key, want := range map[string]string{"Uid": "65534", "Gid": "65534", "CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1"} {
		got := strings.Fields(st[key])
		if len(got) == 0 || got[0] != want {
			t.Errorf("relay process %s: %q, want %s", key, st[key], want)
		}
	}
	// The root is read-only: the relay's user could not write / anyway, but
	// the mount must say ro, and its state volume must be writable (it
	// saved the target).
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", rc.State.Pid))
	if err != nil {
		t.Fatal(err)
	}
	root := ""
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[1] == "/" {
			root = f[3]
		}
	}
	if !strings.HasPrefix(root, "ro,") && root != "ro" {
		t.Errorf("relay root mount options %q, want ro", root)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/state/relay.json", rc.State.Pid)); err != nil {
		t.Errorf("relay state file: %v; the relay could not save its target", err)
	}
	// Positive control: a deploy still switches through the hardened relay.
	e.mustDeploy("--image", v1, name)
	assertServes(t, ng.URL()+"/", "v1")
}

// procStatus reads /proc/<pid>/status into key -> value.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}
