package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/baton-sh/baton/internal/atomicfile"
	"github.com/baton-sh/baton/internal/state"
)

// A supply-chain cooldown (--min-age, label baton.min-age): watch deploys a
// digest only once it has been in the registry under the tag for that long,
// so a bad or malicious push that is noticed and replaced within the window
// never reaches the host.
//
// "In the registry for that long" is measured from the first time a baton
// watch on this host saw the digest under the tag, kept in the state
// directory so restarts do not reset it. The registry offers no reliable
// push time: the manifest carries none, and the image's "created" is
// whatever the image's author wrote (a build can set any date, and
// reproducible builds set 1970). A registry notification (baton serve)
// carries a push time, but watch does not receive them.

// seenFileName holds the first-seen times in the state directory.
const seenFileName = "watch-seen.json"

// seenKeep bounds the file: entries first seen longer ago are dropped
// (their digests have long passed any cooldown).
const seenKeep = 90 * 24 * time.Hour

// Seen remembers when a digest was first seen under a tag.
type Seen interface {
	// FirstSeen returns when ref's digest was first seen, recording now
	// if it never was.
	FirstSeen(ctx context.Context, ref, digest string, now time.Time) (time.Time, error)
}

// SeenFile keeps first-seen times in the state directory, shared by every
// watcher on the host (a lock serialises their updates).
type SeenFile struct {
	Dir *state.Dir
}

func (s SeenFile) FirstSeen(ctx context.Context, ref, digest string, now time.Time) (time.Time, error) {
	unlock, err := s.Dir.Lock(ctx, "baton-watch-seen", nil)
	if err != nil {
		return time.Time{}, err
	}
	defer unlock()
	path := filepath.Join(s.Dir.Path(), seenFileName)
	seen := map[string]time.Time{}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return time.Time{}, fmt.Errorf("reading %s: %w", path, err)
	default:
		if err := json.Unmarshal(data, &seen); err != nil {
			return time.Time{}, fmt.Errorf("%s is damaged (%v); remove it to start the cooldowns afresh", path, err)
		}
	}
	key := ref + "@" + digest
	if t, ok := seen[key]; ok {
		return t, nil
	}
	for k, t := range seen {
		if now.Sub(t) > seenKeep {
			delete(seen, k)
		}
	}
	seen[key] = now
	out, err := json.MarshalIndent(seen, "", "  ")
	if err != nil {
		return time.Time{}, err
	}
	if err := atomicfile.Write(path, out, state.FileMode); err != nil {
		return time.Time{}, fmt.Errorf("writing %s: %w", path, err)
	}
	return now, nil
}

// ParseMinAge validates a --min-age or baton.min-age value.
func ParseMinAge(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration like 30m or 48h", v)
	}
	return d, nil
}
