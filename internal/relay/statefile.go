package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/baton-sh/baton/internal/atomicfile"
)

// savedState is the JSON kept in the state file: the current target only.
// Draining targets are not saved; their connections do not survive a relay
// restart anyway.
type savedState struct {
	Version    int       `json:"version"`
	Generation int       `json:"generation"`
	Target     Target    `json:"target"`
	Since      time.Time `json:"since"`
}

const stateVersion = 1

// loadState reads the state file. found is false when there is none yet.
func loadState(path string) (s savedState, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return savedState{}, false, nil
	}
	if err != nil {
		return savedState{}, false, fmt.Errorf("state file %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return savedState{}, false, fmt.Errorf("state file %s: %w", path, err)
	}
	if s.Version != stateVersion {
		return savedState{}, false, fmt.Errorf("state file %s: unsupported version %d", path, s.Version)
	}
	if err := s.Target.Validate(); err != nil {
		return savedState{}, false, fmt.Errorf("state file %s: %w", path, err)
	}
	return s, true, nil
}

// saveState replaces the state file atomically: a reader (or a relay
// starting after a power cut) sees the old file or the new one, never a mix.
func saveState(path string, s savedState) error {
	s.Version = stateVersion
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	b = append(b, '\n')
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	return nil
}
