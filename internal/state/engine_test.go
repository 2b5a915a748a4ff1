package state

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	dopts "github.com/docker/cli/opts"
)

func TestEngineDir(t *testing.T) {
	root := "/var/lib/baton"
	for _, h := range []string{"", "unix:///var/run/docker.sock", "unix:///run/docker.sock"} {
		if got := EngineDir(root, h); got != root {
			t.Errorf("EngineDir(%q) = %s, want the root (the default engine keeps it)", h, got)
		}
	}
	safe := regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)
	seen := map[string]string{}
	for _, h := range []string{
		"unix:///run/baton-current/docker.sock",
		"ssh://root@10.230.1.1",
		"ssh://root@10.230.1.1:22",
		"tcp://10.0.0.2:2376",
		"tcp://10.0.0.2:2377",
		"unix:///" + strings.Repeat("a/", 60) + "docker.sock",
		"ssh://../../etc",
	} {
		got := EngineDir(root, h)
		if filepath.Dir(got) != filepath.Join(root, EnginesDir) {
			t.Errorf("EngineDir(%q) = %s, want a directory right under %s/%s", h, got, root, EnginesDir)
		}
		key := filepath.Base(got)
		if !safe.MatchString(key) || len(key) > 48+1+16 || strings.HasPrefix(key, ".") {
			t.Errorf("EngineKey(%q) = %q: not a safe, bounded file name", h, key)
		}
		if other, dup := seen[key]; dup {
			t.Errorf("EngineKey(%q) = EngineKey(%q) = %s", h, other, key)
		}
		seen[key] = h
		if again := EngineDir(root, h); again != got {
			t.Errorf("EngineDir(%q) not stable: %s then %s", h, got, again)
		}
	}
}

func TestMigrateHostDir(t *testing.T) {
	root := t.TempDir()
	newDir := EngineDir(root, "unix:///run/h1/docker.sock")
	if moved, err := MigrateHostDir(root, "h1", newDir); moved || err != nil {
		t.Fatalf("no old directory: moved=%v err=%v, want nothing done", moved, err)
	}
	old := filepath.Join(root, "hosts", "h1", "deploys")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "r.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	moved, err := MigrateHostDir(root, "h1", newDir)
	if !moved || err != nil {
		t.Fatalf("moved=%v err=%v, want the old directory moved", moved, err)
	}
	if _, err := os.Stat(filepath.Join(newDir, "deploys", "r.json")); err != nil {
		t.Errorf("record not in the engine's directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "hosts", "h1")); !os.IsNotExist(err) {
		t.Errorf("old directory still there: %v", err)
	}
	for _, bad := range []string{"..", ".", "a/../..", ""} {
		if moved, err := MigrateHostDir(root, bad, newDir+"-x"); moved || err != nil {
			t.Errorf("name %q: moved=%v err=%v, want it ignored", bad, moved, err)
		}
	}
	// Both layouts present: nothing moved, the old one named.
	if err := os.MkdirAll(filepath.Join(root, "hosts", "h1"), 0o700); err != nil {
		t.Fatal(err)
	}
	moved, err = MigrateHostDir(root, "h1", newDir)
	if moved || err == nil || !strings.Contains(err.Error(), filepath.Join(root, "hosts", "h1")) {
		t.Errorf("moved=%v err=%v, want the old directory named and left", moved, err)
	}
}

// TestEngineDirOneEngineOneDir: however a run named an engine (DOCKER_HOST
// goes through the docker CLI's ParseHost, a context or a hosts file keeps
// the URL as written), one engine gets one state directory; URLs of
// different engines keep theirs apart.
func TestEngineDirOneEngineOneDir(t *testing.T) {
	root := "/var/lib/baton"
	dockerHost := func(v string) string {
		h, err := dopts.ParseHost(false, v)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	for _, same := range [][]string{
		{"tcp://10.0.0.5", dockerHost("tcp://10.0.0.5"), "tcp://10.0.0.5:2375", "tcp://10.0.0.5:2375/", " tcp://10.0.0.5 "},
		{"tcp://Web1.Example:2376", "tcp://web1.example:2376", "TCP://web1.example:2376/"},
		{"tcp://[fd00::5]:2375", "tcp://[FD00::5]:2375/", dockerHost("tcp://[fd00::5]:2375")},
		{"unix:///run/h1/docker.sock", "unix:///run/h1/docker.sock/", "unix:///run//h1/./docker.sock"},
		{"ssh://root@10.230.1.1", "ssh://root@10.230.1.1/"},
		{root, "unix:///var/run/docker.sock/", "unix:///run/docker.sock/", "unix:///var/run/../run/docker.sock"},
	} {
		want := EngineDir(root, same[0])
		if same[0] == root {
			want = root
		}
		for _, h := range same[1:] {
			if got := EngineDir(root, h); got != want {
				t.Errorf("EngineDir(%q) = %s, want %s (the directory of %q: the same engine)", h, got, want, same[0])
			}
		}
	}
	// Controls: different engines, different directories.
	seen := map[string]string{}
	for _, h := range []string{
		"tcp://10.0.0.5", "tcp://10.0.0.5:2376", "tcp://10.0.0.6", "tcp://10.0.0.5:2375/v2",
		"unix:///run/h1/docker.sock", "unix:///run/h2/docker.sock",
		"ssh://root@10.230.1.1", "ssh://root@10.230.1.1:22", "ssh://deploy@10.230.1.1",
	} {
		got := EngineDir(root, h)
		if got == root {
			t.Errorf("EngineDir(%q) is the root", h)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("EngineDir(%q) = EngineDir(%q) = %s", h, other, got)
		}
		seen[got] = h
	}
}
