package state

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// A new state directory is 0700 and what baton writes in it 0600.
func TestStateModes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteRecord("web", map[string]string{"id": "x"}); err != nil {
		t.Fatal(err)
	}
	unlock, err := d.Lock(context.Background(), "web", nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	for p, want := range map[string]os.FileMode{
		root: 0o700, filepath.Join(root, "locks"): 0o700, filepath.Join(root, "deploys"): 0o700,
		filepath.Join(root, "deploys", "web.json"): 0o600, filepath.Join(root, "locks", "web.lock"): 0o600,
	} {
		if got := mode(t, p); got != want {
			t.Errorf("%s: mode %04o, want %04o", p, got, want)
		}
	}
}

// A state directory an earlier version made (0755, files 0644) is
// tightened by the next Open; a file of another owner or a link is not
// touched, and a world-writable directory is refused.
func TestStateModesTightened(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	for _, dir := range []string{root, filepath.Join(root, "locks"), filepath.Join(root, "deploys")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []string{filepath.Join(root, "journal.jsonl"), filepath.Join(root, "deploys", "web.json"), filepath.Join(root, "locks", "web.lock")}
	for _, f := range files {
		if err := os.WriteFile(f, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{root, filepath.Join(root, "locks"), filepath.Join(root, "deploys")} {
		if got := mode(t, dir); got != 0o700 {
			t.Errorf("%s: mode %04o, want 0700", dir, got)
		}
	}
	for _, f := range files {
		if got := mode(t, f); got != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", f, got)
		}
	}
	if got := mode(t, outside); got != 0o644 {
		t.Errorf("the link's target was changed to %04o", got)
	}

	shared := t.TempDir()
	if err := os.Chmod(shared, 0o1777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(shared); err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Fatalf("a world-writable state directory: %v", err)
	}
	if got := mode(t, shared); got != 0o777 {
		t.Errorf("the shared directory's mode changed to %04o", got)
	}
}
