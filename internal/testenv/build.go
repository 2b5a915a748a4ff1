package testenv

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// modulePath is the module whose root ModuleRoot looks for.
const modulePath = "github.com/baton-sh/baton"

// ModuleRoot returns the directory holding baton's go.mod: found upwards from
// the working directory (tests run in their package directory), else from
// this source file's directory.
func ModuleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if isModuleRoot(dir) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("module root: no go.mod of %s above %v", modulePath, starts)
}

func isModuleRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == modulePath
		}
	}
	return false
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

var builds struct {
	mu sync.Mutex
	m  map[string]*buildResult
}

// BuildBinary builds a package of the module (such as "./cmd/demoapp") as a
// static binary, once per process, and returns its path. The binary lives in
// a cache directory per module checkout that later runs overwrite, so it is
// not removed with the test.
func BuildBinary(t TB, pkg string) string {
	t.Helper()
	return buildOnce(t, pkg, false)
}

// BuildBinaryCgo builds pkg with CGO_ENABLED=1, the way go build and go
// install do where a C compiler exists: for a package using net or os/user,
// a dynamically linked binary.
func BuildBinaryCgo(t TB, pkg string) string {
	t.Helper()
	return buildOnce(t, pkg, true)
}

func buildOnce(t TB, pkg string, cgo bool) string {
	t.Helper()
	key := fmt.Sprintf("%s cgo=%v", pkg, cgo)
	builds.mu.Lock()
	if builds.m == nil {
		builds.m = map[string]*buildResult{}
	}
	r := builds.m[key]
	if r == nil {
		r = &buildResult{}
		builds.m[key] = r
	}
	builds.mu.Unlock()
	r.once.Do(func() {
		// Not t.Context(): later callers share the result, so this test's end
		// must not cancel the build under them.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Minute)
		defer cancel()
		r.path, r.err = buildBinary(ctx, pkg, cgo)
	})
	if r.err != nil {
		t.Fatalf("%v", r.err)
	}
	return r.path
}

func buildBinary(ctx context.Context, pkg string, cgo bool) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "baton-testenv-bin-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	name := path.Base(pkg)
	if cgo {
		name += "-cgo"
	}
	out := filepath.Join(dir, name)
	// Build beside the final name, then rename: test binaries of other packages
	// may be running or reading the previous build right now.
	tmp, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	tmpName := tmp.Name()
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmpName, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	output, err := cmd.CombinedOutput()
	if err != nil {
		rmErr := os.Remove(tmpName)
		return "", fmt.Errorf("build %s: %w\n%s", pkg, errors.Join(err, rmErr), output)
	}
	if err := os.Rename(tmpName, out); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, errors.Join(err, os.Remove(tmpName)))
	}
	return out, nil
}
