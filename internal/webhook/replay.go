package webhook

import (
	"errors"
	"sync"
	"time"
)

// DefaultReplayEntries bounds the replay cache: 64Ki signatures within one
// window is far beyond what CI and registries send, and costs a few MiB.
const DefaultReplayEntries = 1 << 16

// ReplayCache remembers signatures until they expire, so each is accepted
// once. It is bounded: when full of unexpired entries it refuses new ones
// (ErrReplayCacheFull) rather than forget one that could then be replayed.
type ReplayCache struct {
	max int

	mu   sync.Mutex
	seen map[string]time.Time // key -> when it stops mattering
}

// NewReplayCache returns a cache of at most max entries (default
// DefaultReplayEntries).
func NewReplayCache(max int) *ReplayCache {
	if max <= 0 {
		max = DefaultReplayEntries
	}
	return &ReplayCache{max: max, seen: map[string]time.Time{}}
}

var errNoReplayCache = errors.New("signed requests need a replay cache (a bug: Auth.Replay is not set)")

// Add records key until until (inclusive: a timestamp exactly one window
// old is still accepted, so its signature must still be known then). It
// returns ErrReplayed if key is already recorded and has not expired at now.
func (c *ReplayCache) Add(key string, until, now time.Time) error {
	if c == nil {
		return errNoReplayCache
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[key]; ok && !now.After(exp) {
		return ErrReplayed
	}
	if len(c.seen) >= c.max {
		for k, exp := range c.seen {
			if now.After(exp) {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= c.max {
			return ErrReplayCacheFull
		}
	}
	c.seen[key] = until
	return nil
}

// Len is the number of entries held (expired ones not yet swept included).
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
