// Package state holds baton's on-host state: per-service locks, the record
// of a deploy in progress (so a killed run can be converged) and, later, the
// deploy journal.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/baton-sh/baton/internal/atomicfile"
)

// Dir is a state directory.
type Dir struct {
	path string
}

// DefaultPath is $BATON_STATE_DIR, else /var/lib/baton for root, else the
// user's XDG state directory.
func DefaultPath() string {
	if p := os.Getenv("BATON_STATE_DIR"); p != "" {
		return p
	}
	if os.Geteuid() == 0 {
		return "/var/lib/baton"
	}
	if p := os.Getenv("XDG_STATE_HOME"); p != "" {
		return filepath.Join(p, "baton")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "baton")
	}
	return filepath.Join(os.TempDir(), "baton-state")
}

// Open creates the directory layout if needed.
func Open(path string) (*Dir, error) {
	for _, sub := range []string{"locks", "deploys", "services"} {
		if err := os.MkdirAll(filepath.Join(path, sub), 0o755); err != nil {
			return nil, fmt.Errorf("state directory %s: %w", path, err)
		}
	}
	if err := secure(path); err != nil {
		return nil, err
	}
	return &Dir{path: path}, nil
}

// Modes of the state directory and its files: the records name containers
// and images, the journal holds who deployed what and the errors deploys
// met. Only baton's user reads them.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// secure refuses a state directory everyone may write to and tightens the
// modes of what an earlier version created (0755 directories, 0644 files).
func secure(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		// A shared directory such as /tmp: chmod would break every other
		// user of it, and anyone could plant records in it.
		return fmt.Errorf("state directory %s is writable by everyone (mode %04o): give baton a directory of its own (--state-dir, BATON_STATE_DIR)", path, fi.Mode().Perm())
	}
	return tighten(path)
}

// tighten sets DirMode on the state directory and the directories in it
// and takes group and other permissions away from the files in them; an
// entry another user owns is refused. Links are not followed.
func tighten(path string) error {
	if err := tightenOne(path, DirMode); err != nil {
		return err
	}
	top, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", path, err)
	}
	for _, e := range top {
		p := filepath.Join(path, e.Name())
		switch {
		case e.Type().IsRegular():
			if err := tightenOne(p, FileMode); err != nil {
				return err
			}
		case e.IsDir():
			if err := tightenOne(p, DirMode); err != nil {
				return err
			}
			entries, err := os.ReadDir(p)
			if err != nil {
				return fmt.Errorf("state directory %s: %w", p, err)
			}
			for _, f := range entries {
				want := anyMode // links and the like: their owner is checked
				if f.Type().IsRegular() {
					want = FileMode
				}
				if err := tightenOne(filepath.Join(p, f.Name()), want); err != nil {
					return err
				}
			}
		default:
			if err := tightenOne(p, anyMode); err != nil {
				return err
			}
		}
	}
	return nil
}

// anyMode keeps every permission: tightenOne then only checks the owner.
const anyMode os.FileMode = 0o7777

func tightenOne(p string, want os.FileMode) error {
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // removed meanwhile by another baton
		}
		return fmt.Errorf("state directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() {
		// Its owner can write there: deploy and service records say which
		// containers baton renames and removes and which commands it runs,
		// so one planted by another user would be obeyed as root's.
		return fmt.Errorf("state directory: %s is owned by uid %d, not by baton's user (uid %d); whoever owns it can plant records baton acts on: check it, then chown -R %d %s, or remove it",
			p, st.Uid, os.Geteuid(), os.Geteuid(), p)
	}
	if fi.Mode()&os.ModeSymlink != 0 || !ok || fi.Mode().Perm()&^want == 0 {
		return nil
	}
	if err := os.Chmod(p, fi.Mode().Perm()&want); err != nil {
		return fmt.Errorf("state directory: tightening %s: %w", p, err)
	}
	return nil
}

// Path is the directory's location.
func (d *Dir) Path() string { return d.path }

var unsafeKey = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// fileKey turns a service key into a safe file name.
func fileKey(key string) string {
	return unsafeKey.ReplaceAllString(key, "_")
}

func (d *Dir) recordPath(key string) string {
	return filepath.Join(d.path, "deploys", fileKey(key)+".json")
}

// WriteRecord stores v as the in-progress record of service key, atomically.
func (d *Dir) WriteRecord(key string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("deploy record for %s: %w", key, err)
	}
	return atomicfile.Write(d.recordPath(key), append(data, '\n'), FileMode)
}

// ReadRecord loads the record of service key into v; false when there is none.
func (d *Dir) ReadRecord(key string, v any) (bool, error) {
	data, err := os.ReadFile(d.recordPath(key))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("deploy record for %s: %w", key, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("deploy record %s is damaged (%v); remove it once the service is checked", d.recordPath(key), err)
	}
	return true, nil
}

// RemoveRecord deletes the record of service key; a missing one is fine.
func (d *Dir) RemoveRecord(key string) error {
	err := os.Remove(d.recordPath(key))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deploy record for %s: %w", key, err)
	}
	return nil
}

func (d *Dir) servicePath(key string) string {
	return filepath.Join(d.path, "services", fileKey(key)+".json")
}

// WriteService stores v as what baton knows of service key for good (the
// container it created, the settings the operator gave), atomically and
// readable by root only: it is the source for later privileged actions,
// which a label never is.
func (d *Dir) WriteService(key string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("service record for %s: %w", key, err)
	}
	return atomicfile.Write(d.servicePath(key), append(data, '\n'), 0o600)
}

// ReadService loads the service record of key into v; false when there is none.
func (d *Dir) ReadService(key string, v any) (bool, error) {
	data, err := os.ReadFile(d.servicePath(key))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("service record for %s: %w", key, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("service record %s is damaged (%v); remove it and deploy the service again", d.servicePath(key), err)
	}
	return true, nil
}

// RecordFiles returns the contents of every record in sub ("services" or
// "deploys"), for listing what baton manages.
func (d *Dir) RecordFiles(sub string) ([][]byte, error) {
	entries, err := os.ReadDir(filepath.Join(d.path, sub))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", d.path, err)
	}
	var out [][]byte
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".json" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d.path, sub, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("state directory %s: %w", d.path, err)
		}
		out = append(out, data)
	}
	return out, nil
}
