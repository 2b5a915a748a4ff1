package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A secret file others may read or write, or that another user owns, is
// refused with a one-line error naming the fix; a 0600 (or 0640) file of
// baton's user is read (the positive control).
func TestReadSecretFileModes(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, mode := range []os.FileMode{0o600, 0o640, 0o400} {
		b, err := readSecret(write("ok", mode), "UNUSED")
		if err != nil || string(b) != "0123456789abcdef" {
			t.Fatalf("mode %04o (positive control): %q %v", mode, b, err)
		}
	}
	for mode, want := range map[os.FileMode]string{0o644: "readable by everyone", 0o604: "readable by everyone", 0o660: "writable by group or others", 0o602: "writable by group or others"} {
		p := write("bad", mode)
		_, err := readSecret(p, "UNUSED")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "chmod 600 "+p) || strings.Contains(err.Error(), "\n") {
			t.Errorf("mode %04o: %v, want a one-line refusal saying %q", mode, err, want)
		}
	}
	if os.Geteuid() == 0 {
		p := write("theirs", 0o600)
		if err := os.Chown(p, 12345, 12345); err != nil {
			t.Fatal(err)
		}
		if _, err := readSecret(p, "UNUSED"); err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
			t.Errorf("another user's file: %v", err)
		}
	}
}
