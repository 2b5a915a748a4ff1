package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// EngineSSH is an sshd in an engine host's network namespace, the way a
// controller reaches a Docker host on another machine: DOCKER_HOST (or a
// docker context) ssh://User@Addr/SOCKET, through the docker CLI's
// connection helper, which runs `ssh` from PATH and `docker system
// dial-stdio` on the host.
type EngineSSH struct {
	User string
	// DockerHost is the engine's URL over ssh, with the engine's socket as
	// its path (the host's docker CLI talks to that socket).
	DockerHost string
	// Env puts an ssh first on PATH that uses this sshd's client config
	// (the test's key and known_hosts), so nothing of ~/.ssh is read or
	// written; give it to the baton (and docker) processes.
	Env []string
}

// StartSSH runs sshd in the host's namespace (StartSSHD) and returns the
// engine's URL over it.
func (h *EngineHost) StartSSH(t TB) *EngineSSH {
	t.Helper()
	user, env := StartSSHD(t, h.Name, h.Addr)
	return &EngineSSH{
		User:       user,
		DockerHost: fmt.Sprintf("ssh://%s@%s%s", user, h.Addr, strings.TrimPrefix(h.Socket, "unix://")),
		Env:        env,
	}
}

// StartSSHD runs sshd in network namespace netns, listening on addr port
// 22, with a host key and a client key made for the test (ssh-keygen), a
// config file and authorized_keys of its own; it stops with the test. It
// returns the user to log in as and the environment that puts an ssh
// first on PATH using this sshd's client config (so nothing of ~/.ssh is
// read or written). It needs Debian's openssh-server (scripts/setup
// installs it) and the docker CLI on root's PATH there.
func StartSSHD(t TB, netns, addr string) (user string, env []string) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Fatalf("sshd is needed (Debian's openssh-server; scripts/setup installs it): %v", err)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("the docker CLI is needed on the host's PATH (the ssh connection helper runs docker system dial-stdio there): %v", err)
	}
	dir, err := os.MkdirTemp("", netns+"-ssh-")
	if err != nil {
		t.Fatalf("ssh dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	keygen := func(path string) {
		if out, err := exec.CommandContext(t.Context(), "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	keygen(filepath.Join(dir, "host_key"))
	keygen(filepath.Join(dir, "id"))
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("ssh: %v", err)
		}
		return string(b)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatalf("ssh: %v", err)
		}
		return p
	}
	auth := write("authorized_keys", read("id.pub"))
	known := write("known_hosts", addr+" "+read("host_key.pub"))
	sshdConf := write("sshd_config", strings.Join([]string{
		"ListenAddress " + addr + ":22",
		"HostKey " + filepath.Join(dir, "host_key"),
		"AuthorizedKeysFile " + auth,
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"PidFile none",
		"LogLevel ERROR",
		// Every API connection of the connection helper is a session.
		"MaxSessions 64",
		"MaxStartups 64",
	}, "\n")+"\n")
	clientConf := write("ssh_config", strings.Join([]string{
		"Host *",
		"  IdentityFile " + filepath.Join(dir, "id"),
		"  IdentitiesOnly yes",
		"  UserKnownHostsFile " + known,
		"  StrictHostKeyChecking yes",
		"  BatchMode yes",
		// One ssh connection for all of baton's: the docker CLI's helper
		// starts an ssh per API connection, and baton's docker exec dials
		// take one each (the README recommends the same).
		"  ControlMaster auto",
		"  ControlPath " + filepath.Join(dir, "cm-%C"),
		"  ControlPersist 30s",
	}, "\n")+"\n")
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("ssh: %v", err)
	}
	sshd := exec.Command("nsenter", "--net=/var/run/netns/"+netns, "/usr/sbin/sshd", "-D", "-e", "-f", sshdConf)
	var logMu sync.Mutex
	var sshdLog strings.Builder
	sshd.Stdout = lockedWriter{&logMu, &sshdLog}
	sshd.Stderr = sshd.Stdout
	if err := sshd.Start(); err != nil {
		t.Fatalf("starting sshd on %s: %v", netns, err)
	}
	logText := func() string { logMu.Lock(); defer logMu.Unlock(); return sshdLog.String() }
	t.Cleanup(func() {
		// The control master outlives the test's baton runs.
		_ = exec.Command("/usr/bin/ssh", "-F", clientConf, "-O", "exit", addr).Run()
		_ = sshd.Process.Kill()
		_ = sshd.Wait()
		if l := logText(); l != "" {
			t.Logf("sshd on %s:\n%s", netns, l)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr+":22", time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd on %s (%s) did not listen: %v; log: %s", netns, addr, err, logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatalf("ssh: %v", err)
	}
	wrapper := "#!/bin/sh\nexec /usr/bin/ssh -F " + clientConf + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(wrapper), 0o755); err != nil {
		t.Fatalf("ssh: %v", err)
	}
	return "root", []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
