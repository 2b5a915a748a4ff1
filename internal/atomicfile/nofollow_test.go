package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// A link anywhere on the path (a directory, or the file itself when read)
// is refused and nothing is written where it points; the same write along
// real directories succeeds (the positive control), creating what is missing.
func TestNoFollow(t *testing.T) {
	root := t.TempDir()
	elsewhere := filepath.Join(root, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(root, "real", "sub", "web.conf")
	if err := WriteNoFollow(real, []byte("a\n"), 0o644, 0o755); err != nil {
		t.Fatalf("positive control: %v", err)
	}
	if b, err := ReadNoFollow(real); err != nil || string(b) != "a\n" {
		t.Fatalf("read back: %q %v", b, err)
	}
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if _, err := ReadNoFollow(filepath.Join(root, "real", "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}

	// A directory component that is a link.
	if err := os.Symlink(elsewhere, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	through := filepath.Join(root, "link", "web.conf")
	if err := WriteNoFollow(through, []byte("b\n"), 0o644, 0o755); !errors.Is(err, ErrSymlink) {
		t.Fatalf("write through a linked directory: %v", err)
	}
	if err := WriteNoFollow(filepath.Join(root, "link", "new", "web.conf"), []byte("b\n"), 0o644, 0o755); !errors.Is(err, ErrSymlink) {
		t.Fatalf("mkdir through a linked directory: %v", err)
	}
	if _, err := ReadNoFollow(through); !errors.Is(err, ErrSymlink) {
		t.Fatalf("read through a linked directory: %v", err)
	}
	if err := RemoveNoFollow(through); !errors.Is(err, ErrSymlink) {
		t.Fatalf("remove through a linked directory: %v", err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Fatalf("written where the link points: %v", entries)
	}

	// The file itself a link: not read through; a write replaces the link.
	secret := filepath.Join(elsewhere, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "real", "sub", "linked.conf")
	if err := os.Symlink(secret, file); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadNoFollow(file); !errors.Is(err, ErrSymlink) {
		t.Fatalf("read of a linked file: %q %v", b, err)
	}
	if err := WriteNoFollow(file, []byte("c\n"), 0o644, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "s3cret" {
		t.Fatalf("link target changed: %q", b)
	}
	if fi, _ := os.Lstat(file); !fi.Mode().IsRegular() {
		t.Fatalf("link not replaced: %v", fi.Mode())
	}
	if err := WriteNoFollow("relative/web.conf", nil, 0o644, 0o755); err == nil {
		t.Fatal("relative path accepted")
	}
}
