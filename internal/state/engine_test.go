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
	// Both layouts present: what the engine's directory lacks is moved,
	// a file both have is left and named.
	writeFiles(t, filepath.Join(root, "hosts", "h1"), "deploys/r.json", "deploys/s.json")
	moved, err = MigrateHostDir(root, "h1", newDir)
	if !moved || err == nil || !strings.Contains(err.Error(), filepath.Join(root, "hosts", "h1")) || !strings.Contains(err.Error(), filepath.Join("deploys", "r.json")) {
		t.Errorf("moved=%v err=%v, want s.json moved and r.json named and left", moved, err)
	}
	if _, err := os.Stat(filepath.Join(newDir, "deploys", "s.json")); err != nil {
		t.Errorf("s.json not moved: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "hosts", "h1", "deploys", "r.json")); err != nil {
		t.Errorf("r.json, in both, not left in the old directory: %v", err)
	}
}

// writeFiles makes each file (a path under dir) with its own name as
// content.
func writeFiles(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrateHostDirIntoRoot: a host whose engine is the machine's default
// one has the root as its state directory, which always exists: its old
// records move in beside the root's own (before, the move failed on every
// run and the records were never read), the root's files are untouched,
// and a file both have is left in the old directory and named.
func TestMigrateHostDirIntoRoot(t *testing.T) {
	root := t.TempDir()
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, root, "journal.jsonl", "locks/web.lock", "deploys/api.json")
	old := filepath.Join(root, "hosts", "h1")
	writeFiles(t, old, "deploys/web.json", "services/web.json", "locks/web.lock", "locks/db.lock")
	dir := EngineDir(root, "unix:///var/run/docker.sock")
	if dir != root {
		t.Fatalf("the default engine's directory is %s, want the root", dir)
	}
	moved, err := MigrateHostDir(root, "h1", dir)
	if !moved || err != nil {
		t.Fatalf("moved=%v err=%v, want the old records moved into the root", moved, err)
	}
	for f, want := range map[string]string{
		"deploys/web.json": "deploys/web.json", "services/web.json": "services/web.json", "locks/db.lock": "locks/db.lock",
		"journal.jsonl": "journal.jsonl", "deploys/api.json": "deploys/api.json", "locks/web.lock": "locks/web.lock",
	} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || string(b) != want {
			t.Errorf("%s in the root: %q, %v; want %q", f, b, err, want)
		}
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("old directory still there after everything moved: %v", err)
	}
	// The records are where a deploy on that engine reads them.
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(st.Path(), "deploys", "web.json")); err != nil {
		t.Errorf("record not in the engine's state directory: %v", err)
	}

	// A journal in both: the old one stays, named; the rest moves.
	writeFiles(t, old, "journal.jsonl", "deploys/db.json")
	moved, err = MigrateHostDir(root, "h1", dir)
	if !moved || err == nil || !strings.Contains(err.Error(), "journal.jsonl") || strings.Contains(err.Error(), "\n") {
		t.Errorf("moved=%v err=%v, want deploys/db.json moved and journal.jsonl named", moved, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "journal.jsonl")); string(b) != "journal.jsonl" {
		t.Errorf("the root's journal was changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(root, "deploys", "db.json")); err != nil {
		t.Errorf("deploys/db.json not moved: %v", err)
	}
	if _, err := os.Stat(filepath.Join(old, "journal.jsonl")); err != nil {
		t.Errorf("the old journal is gone: %v", err)
	}
	// Again, with nothing new: nothing moved, the leftover still named.
	moved, err = MigrateHostDir(root, "h1", dir)
	if moved || err == nil {
		t.Errorf("again: moved=%v err=%v, want nothing moved and the leftover named", moved, err)
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
