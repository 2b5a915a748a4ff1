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

// A state directory, or anything in it, that another user owns is refused:
// that user could plant deploy and service records (which containers baton
// renames and removes, which reload command it runs) that root would obey.
// The same layout owned by baton's user opens (the positive control).
func TestStateOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root") // CI and this host run the tests as root
	}
	const other = 12345
	plant := func(t *testing.T) (root string, planted map[string]string) {
		root = filepath.Join(t.TempDir(), "state")
		d, err := Open(root)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.WriteService("web", map[string]string{"id": "x"}); err != nil {
			t.Fatal(err)
		}
		planted = map[string]string{
			"the directory":      root,
			"a service record":   filepath.Join(root, "services", "web.json"),
			"a subdirectory":     filepath.Join(root, "deploys"),
			"a link in a subdir": filepath.Join(root, "services", "evil.json"),
			"a file at the top":  filepath.Join(root, "journal.jsonl"),
		}
		if err := os.Symlink("/dev/null", planted["a link in a subdir"]); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(planted["a file at the top"], nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return root, planted
	}
	root, _ := plant(t)
	if _, err := Open(root); err != nil {
		t.Fatalf("positive control: %v", err)
	}
	for _, what := range []string{"the directory", "a service record", "a subdirectory", "a link in a subdir", "a file at the top"} {
		t.Run(what, func(t *testing.T) {
			root, planted := plant(t)
			p := planted[what]
			if err := os.Lchown(p, other, other); err != nil {
				t.Fatal(err)
			}
			_, err := Open(root)
			if err == nil || !strings.Contains(err.Error(), p+" is owned by uid 12345") {
				t.Fatalf("state directory with %s of another user: %v", what, err)
			}
		})
	}
}
