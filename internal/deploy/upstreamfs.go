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
// could otherwise point baton's root-owned writes anywhere. Components that
// do not exist yet are fine (baton creates them).
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
		case last && !fi.Mode().IsRegular():
			return classify(ErrInvalid, "upstream file %s is not a regular file", path)
		}
	}
	return nil
}
