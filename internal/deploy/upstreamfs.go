package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// CheckUpstreamFS refuses an upstream file whose path passes through a
// symbolic link, or that is one: whoever can plant a link in that directory
// could otherwise point baton's root-owned writes anywhere. It also refuses
// a directory on the path that everyone may write to (a sticky one like
// /tmp only above the file's own directory): nginx, running as root, reads
// what is there. Components that do not exist yet are fine (baton creates
// them).
func CheckUpstreamFS(path string) error {
	if !filepath.IsAbs(path) {
		return classify(ErrInvalid, "upstream file %q must be an absolute path", path)
	}
	cur := string(filepath.Separator)
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(path), cur), cur)
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("upstream file %s: %w", path, err)
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			what := "its directory " + cur
			if last {
				what = "it"
			}
			return classify(ErrInvalid, "upstream file %s: %s is a symbolic link, which baton refuses to write through; use the real path", path, what)
		case !last && !fi.IsDir():
			return classify(ErrInvalid, "upstream file %s: %s is not a directory", path, cur)
		case !last && othersMayReplace(fi, i == len(parts)-2):
			return classify(ErrInvalid, "upstream file %s: directory %s is writable by everyone (mode %04o), so anyone could put their own configuration where nginx reads baton's; keep upstream files in a directory only root writes (chmod o-w %s)", path, cur, unixPerm(fi.Mode()), cur)
		case last && !fi.Mode().IsRegular():
			return classify(ErrInvalid, "upstream file %s is not a regular file", path)
		}
	}
	return nil
}

// othersMayReplace reports whether users other than the owner and group can
// replace entries of directory fi: it is world-writable and, unless it holds
// the upstream file itself, not sticky (a sticky /tmp above a root-owned
// directory is fine; in the file's own directory anyone could still plant
// files nginx may include).
func othersMayReplace(fi fs.FileInfo, holdsFile bool) bool {
	if fi.Mode().Perm()&0o002 == 0 {
		return false
	}
	return holdsFile || fi.Mode()&fs.ModeSticky == 0
}

// unixPerm is mode's permission bits with the sticky bit, as chmod writes them.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}
