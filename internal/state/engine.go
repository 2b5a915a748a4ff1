package state

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	dopts "github.com/docker/cli/opts"
)

// EnginesDir is the directory, under the root state directory, holding one
// state directory per engine other than the machine's default one.
const EnginesDir = "engines"

// defaultEngines are the URLs of the machine's own default engine (/var/run
// is a link to /run on every current distribution). Its state stays in the
// root state directory, where every earlier version kept it.
var defaultEngines = map[string]bool{
	"":                            true,
	"unix:///var/run/docker.sock": true,
	"unix:///run/docker.sock":     true,
}

// EngineDir is the state directory of the engine at host (its URL, as the
// docker CLI resolved it): root for the machine's default engine, else
// root/engines/KEY. Keyed by the engine and not by how a run named it (a
// context, DOCKER_HOST, a rollout's hosts file), so that every invocation
// that talks to one engine shares its records and host locks: a rollout
// and a single-host deploy of one container lock each other out.
//
// The URL is normalised first (see EngineURL): DOCKER_HOST reaches baton
// through the docker CLI's ParseHost, a context or a hosts file's
// docker-host= as written, and one engine must get one directory either way.
func EngineDir(root, host string) string {
	host = EngineURL(host)
	if defaultEngines[host] {
		return root
	}
	return filepath.Join(root, EnginesDir, EngineKey(host))
}

// EngineURL is host as the state directory is keyed by: tcp:// and
// unix:// URLs through the docker CLI's own ParseHost (tcp://10.0.0.5
// becomes tcp://10.0.0.5:2375, as DOCKER_HOST=tcp://10.0.0.5 does), a tcp
// host name in lower case, a unix socket's path cleaned, no trailing
// slash. An ssh:// URL keeps its port as written: ssh://h and ssh://h:22
// may differ (the ssh config can give h another port). A URL ParseHost
// refuses is kept as it is (the connection refuses it anyway).
func EngineURL(host string) string {
	h := strings.TrimSpace(host)
	scheme, rest, ok := strings.Cut(h, "://")
	if !ok {
		return h
	}
	scheme = strings.ToLower(scheme)
	rest = strings.TrimRight(rest, "/")
	switch scheme {
	case "unix":
		if rest == "" {
			return h
		}
		return scheme + "://" + filepath.Clean(rest)
	case "tcp":
		p, err := dopts.ParseHost(false, scheme+"://"+rest)
		if err != nil {
			return h
		}
		u, err := url.Parse(p)
		if err != nil {
			return p
		}
		u.Host = strings.ToLower(u.Host)
		return u.String()
	}
	return scheme + "://" + rest
}

var unsafeEngineKey = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// EngineKey names an engine's state directory: the URL made safe for a file
// name (readable in ls), cut to 48 bytes, and 8 bytes of its SHA-256 so
// that two URLs that read alike never share one.
func EngineKey(host string) string {
	slug := strings.Trim(unsafeEngineKey.ReplaceAllString(host, "-"), "-.")
	if len(slug) > 48 {
		slug = strings.TrimRight(slug[:48], "-.")
	}
	sum := sha256.Sum256([]byte(host))
	return slug + "-" + hex.EncodeToString(sum[:8])
}

// MigrateHostDir moves a host's state directory of the layout a rollout
// used before state was keyed by engine (root/hosts/NAME) to the engine's
// own. When the engine has no directory yet it is renamed; when it has one
// (always so for the machine's default engine, whose directory is the root
// itself, and for an engine a single-host run used since), each file is
// moved that the engine's directory does not have, so deploy records of an
// interrupted run are found again. It reports whether it moved anything; a
// file both have is left where it was and named in the error, for the
// operator to merge or remove.
func MigrateHostDir(root, name, engineDir string) (bool, error) {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\`) {
		return false, nil // not a name a hosts file or context allows: no path of it
	}
	old := filepath.Join(root, "hosts", name)
	if filepath.Clean(engineDir) == old {
		return false, nil
	}
	fi, err := os.Lstat(old)
	if err != nil || !fi.IsDir() {
		return false, nil // nothing of the old layout
	}
	if _, err := os.Lstat(engineDir); err == nil {
		return mergeHostDir(old, name, engineDir)
	}
	if err := os.MkdirAll(filepath.Dir(engineDir), DirMode); err != nil {
		return false, fmt.Errorf("state directory %s: %w", filepath.Dir(engineDir), err)
	}
	if err := os.Rename(old, engineDir); err != nil {
		return false, fmt.Errorf("moving state directory %s to %s: %w", old, engineDir, err)
	}
	return true, nil
}

// mergeHostDir moves every regular file of old that engineDir lacks to the
// same place under it, then removes the directories of old left empty. A
// lock file engineDir has too is dropped (it holds no state: a lock is
// the flock on the open file, and runs now lock the one in engineDir); any
// other file both have, and anything not a regular file or directory (a
// link is not followed), stays in old and is named in the error.
func mergeHostDir(old, name, engineDir string) (bool, error) {
	var moved bool
	var left []string
	var dirs []string
	err := filepath.WalkDir(old, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(old, path)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, path)
			if rel != "." {
				if err := os.MkdirAll(filepath.Join(engineDir, rel), DirMode); err != nil {
					return fmt.Errorf("state directory %s: %w", filepath.Join(engineDir, rel), err)
				}
			}
			return nil
		case !d.Type().IsRegular():
			left = append(left, rel)
			return nil
		}
		dst := filepath.Join(engineDir, rel)
		if _, err := os.Lstat(dst); err == nil {
			if filepath.Dir(rel) == "locks" {
				return os.Remove(path)
			}
			left = append(left, rel)
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.Rename(path, dst); err != nil {
			return fmt.Errorf("moving %s to %s: %w", path, dst, err)
		}
		moved = true
		return nil
	})
	// Deepest first: a directory empties once its children are gone.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i]) // fails, as it should, on one still holding a file
	}
	if err != nil {
		return moved, fmt.Errorf("moving state directory %s (host %s before state was kept per engine) into %s: %w", old, name, engineDir, err)
	}
	if len(left) > 0 {
		return moved, fmt.Errorf("state directory %s (host %s before state was kept per engine): %s not moved into %s, which is used now (it has them too, or they are not plain files): merge or remove them", old, name, strings.Join(left, ", "), engineDir)
	}
	return moved, nil
}
