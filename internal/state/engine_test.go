package state

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
