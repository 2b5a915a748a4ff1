package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrSymlink marks a path that passes through, or ends in, a symbolic link.
var ErrSymlink = errors.New("symbolic link on the path")

// The NoFollow functions act on a path whose directories someone other than
// the caller may be able to change (an nginx upstream directory shared with
// an nginx container, a directory the operator allowed). A check of the path
// followed by a write by name can be raced: a directory swapped for a
// symbolic link between the two would point root's write elsewhere. These
// walk the path from / one component at a time with O_NOFOLLOW, and then
// create, rename, read or remove relative to the final directory's
// descriptor, so a link anywhere on the path is refused at the moment of use.

// WriteNoFollow is Write without following a symbolic link anywhere on path.
// Missing directories are created with dirPerm (less the umask).
func WriteNoFollow(path string, data []byte, perm, dirPerm os.FileMode) error {
	dfd, base, err := openParent(path, true, dirPerm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer unix.Close(dfd)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := "." + base + ".tmp-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return fmt.Errorf("writing %s: creating a temporary file: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(filepath.Dir(path), tmp))
	cleanup := func(err error) error {
		_ = f.Close()
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return cleanup(err)
	}
	if err := f.Chmod(perm); err != nil {
		return cleanup(err)
	}
	if err := f.Sync(); err != nil {
		return cleanup(err)
	}
	if err := f.Close(); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// rename(2) replaces a link at base itself rather than following it.
	if err := unix.Renameat(dfd, tmp, dfd, base); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("writing %s: syncing directory: %w", path, err)
	}
	return nil
}

// ReadNoFollow reads path without following a symbolic link anywhere on it.
// A missing file or directory is an error that matches fs.ErrNotExist.
func ReadNoFollow(path string) ([]byte, error) {
	dfd, base, err := openParent(path, false, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, linkErr(err, path))
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading %s: not a regular file", path)
	}
	return io.ReadAll(f)
}

// RemoveNoFollow removes path (a link at its end is removed, not followed)
// without following a symbolic link in its directories.
func RemoveNoFollow(path string) error {
	dfd, base, err := openParent(path, false, 0)
	if err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, base, 0); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// openParent opens path's directory by walking from / with O_NOFOLLOW, and
// returns its descriptor and path's last component.
func openParent(path string, create bool, dirPerm os.FileMode) (int, string, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return -1, "", fmt.Errorf("want an absolute, clean file path")
	}
	dir, base := filepath.Split(path)
	const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open("/", dirFlags, 0)
	if err != nil {
		return -1, "", err
	}
	cur := "/"
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		next, err := unix.Openat(fd, part, dirFlags, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, part, uint32(dirPerm.Perm())); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, part, dirFlags, 0)
			}
		}
		_ = unix.Close(fd)
		if err != nil {
			return -1, "", linkErr(err, cur)
		}
		fd = next
	}
	return fd, base, nil
}

// linkErr names what O_NOFOLLOW|O_DIRECTORY refused: ELOOP is a link at the
// end, ENOTDIR a link (or a file) where a directory should be.
func linkErr(err error, at string) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %s is a symbolic link, which baton refuses to follow; use the real path", ErrSymlink, at)
	case errors.Is(err, unix.ENOTDIR):
		if fi, lerr := os.Lstat(at); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%w: %s is a symbolic link, which baton refuses to follow; use the real path", ErrSymlink, at)
		}
		return fmt.Errorf("%s is not a directory", at)
	}
	return &os.PathError{Op: "open", Path: at, Err: err}
}
