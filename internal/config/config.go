// Package config reads baton's configuration file (/etc/baton/baton.conf by
// default): settings that hold for every service, the nginx reload command,
// and the directories upstream files may be written in. It is one of the
// few sources baton trusts for a command or a path (with flags and the
// environment), so it must be owned by root (or by the user running baton)
// and writable by no one else.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/baton-sh/baton/internal/deploy"
)

// File is a parsed configuration file.
type File struct {
	Path string
	// Settings are deploy settings by name (nginx-reload, drain, ...).
	Settings map[string]string
	// UpstreamDirs are the upstream-dir lines.
	UpstreamDirs []string
}

// ErrInvalid marks a configuration file baton refuses (exit code 2).
var ErrInvalid = deploy.ErrInvalid

// Load reads the file at path. A missing file is an empty configuration
// unless required (the operator named it explicitly).
func Load(path string, required bool) (File, error) {
	f := File{Path: path, Settings: map[string]string{}}
	if path == "" {
		return f, nil
	}
	data, err := readTrusted(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	return Parse(path, data)
}

// Parse reads "name = value" lines; # starts a comment line. Names are
// baton's setting names (the flags of baton deploy) and upstream-dir, which
// may repeat.
func Parse(path string, data []byte) (File, error) {
	f := File{Path: path, Settings: map[string]string{}}
	known := deploy.SettingNames()
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok || name == "":
			return f, fmt.Errorf("%w: configuration file %s line %d: want name = value", ErrInvalid, path, n)
		case name == "upstream-dir":
			if !filepath.IsAbs(value) {
				return f, fmt.Errorf("%w: configuration file %s line %d: upstream-dir %q must be an absolute path", ErrInvalid, path, n, value)
			}
			f.UpstreamDirs = append(f.UpstreamDirs, filepath.Clean(value))
		case slices.Contains(known, name):
			f.Settings[name] = value
		default:
			return f, fmt.Errorf("%w: configuration file %s line %d: unknown name %q (known: upstream-dir, %s)", ErrInvalid, path, n, name, strings.Join(known, ", "))
		}
	}
	if err := sc.Err(); err != nil {
		return f, fmt.Errorf("configuration file %s: %w", path, err)
	}
	return f, nil
}

// readTrusted reads path after checking that it, and the directory it is in,
// are owned by root or by the user running baton and writable by no one
// else: whoever can write it chooses the commands baton runs as root.
func readTrusted(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: configuration file %s is not a regular file", ErrInvalid, path)
	}
	if err := checkOwner(path, "configuration file", fi); err != nil {
		return nil, err
	}
	if di, err := os.Stat(filepath.Dir(path)); err == nil {
		if err := checkOwner(filepath.Dir(path), "directory of configuration file", di); err != nil {
			return nil, err
		}
	}
	return readAll(fh)
}

func checkOwner(path, what string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: %s %s: cannot read its owner", ErrInvalid, what, path)
	}
	euid := uint32(os.Geteuid())
	if st.Uid != 0 && st.Uid != euid {
		return fmt.Errorf("%w: %s %s is owned by uid %d, not root; chown root %s", ErrInvalid, what, path, st.Uid, path)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s %s is writable by group or others (mode %04o); chmod go-w %s", ErrInvalid, what, path, fi.Mode().Perm(), path)
	}
	return nil
}

func readAll(fh *os.File) ([]byte, error) {
	var b bytes.Buffer
	if _, err := b.ReadFrom(fh); err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", fh.Name(), err)
	}
	return b.Bytes(), nil
}
