package state

import (
	"crypto/sha256"
	"encoding/hex"
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
// own, when the engine has none yet. It reports whether it moved one; an
// old directory left beside an existing new one is named in the error, for
// the operator to merge or remove.
func MigrateHostDir(root, name, engineDir string) (bool, error) {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\`) {
		return false, nil // not a name a hosts file or context allows: no path of it
	}
	old := filepath.Join(root, "hosts", name)
	if engineDir == old {
		return false, nil
	}
	fi, err := os.Lstat(old)
	if err != nil || !fi.IsDir() {
		return false, nil // nothing of the old layout
	}
	if _, err := os.Lstat(engineDir); err == nil {
		return false, fmt.Errorf("state directory %s (host %s before state was kept per engine) is left beside %s, which is used now: merge or remove it", old, name, engineDir)
	}
	if err := os.MkdirAll(filepath.Dir(engineDir), DirMode); err != nil {
		return false, fmt.Errorf("state directory %s: %w", filepath.Dir(engineDir), err)
	}
	if err := os.Rename(old, engineDir); err != nil {
		return false, fmt.Errorf("moving state directory %s to %s: %w", old, engineDir, err)
	}
	return true, nil
}
