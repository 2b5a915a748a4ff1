package state

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Lock takes the per-service lock that keeps two deploys of one service from
// running at once, across processes. It is an flock on a file, so the kernel
// drops it when the holder dies, even by SIGKILL: a killed baton never leaves
// a stuck lock. onWait, if set, is called once when the lock is busy.
func (d *Dir) Lock(ctx context.Context, key string, onWait func()) (unlock func(), err error) {
	path := filepath.Join(d.path, "locks", fileKey(key)+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, FileMode)
	if err != nil {
		return nil, fmt.Errorf("lock for %s: %w", key, err)
	}
	// flock cannot be interrupted by a context, so try without blocking and
	// retry; the kernel offers no wake-up for another process's unlock.
	waited := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK {
			_ = f.Close()
			return nil, fmt.Errorf("lock for %s: %w", key, err)
		}
		if !waited && onWait != nil {
			onWait()
		}
		waited = true
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for the lock on %s (another deploy of it is running): %w", key, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, nil
}

// TryLock is Lock without waiting: ok is false when another holder has it.
func (d *Dir) TryLock(key string) (unlock func(), ok bool, err error) {
	path := filepath.Join(d.path, "locks", fileKey(key)+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, FileMode)
	if err != nil {
		return nil, false, fmt.Errorf("lock for %s: %w", key, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock for %s: %w", key, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, true, nil
}
