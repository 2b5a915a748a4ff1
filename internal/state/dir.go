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
	for _, sub := range []string{"locks", "deploys"} {
		if err := os.MkdirAll(filepath.Join(path, sub), 0o755); err != nil {
			return nil, fmt.Errorf("state directory %s: %w", path, err)
		}
	}
	return &Dir{path: path}, nil
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
	return atomicfile.Write(d.recordPath(key), append(data, '\n'), 0o644)
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
