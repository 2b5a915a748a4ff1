package testenv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/bcrypt"
)

// RegistryOpts says how StartRegistry runs the registry.
type RegistryOpts struct {
	Auth     bool   // require HTTP basic auth (htpasswd)
	User     string // default "baton"
	Password string // default random
	Binary   string // default /usr/bin/docker-registry
}

// Registry is a docker-registry (distribution 2.8) serving on 127.0.0.1 with
// storage in a temp dir. The daemon treats registries on 127.0.0.0/8 as
// insecure-allowed, so plain HTTP works for push and pull.
type Registry struct {
	bin, dir, cfgPath, logPath string
	addr                       string
	auth                       bool
	user, password             string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// StartRegistry starts a registry and stops it in a cleanup.
func StartRegistry(t TB, opts RegistryOpts) *Registry {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = "/usr/bin/docker-registry"
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		t.Fatalf("registry: %v (install Debian's docker-registry package)", err)
	}
	r := &Registry{bin: opts.Binary, dir: t.TempDir(), auth: opts.Auth}
	r.cfgPath = filepath.Join(r.dir, "config.yml")
	r.logPath = filepath.Join(r.dir, "registry.log")
	if opts.Auth {
		r.user, r.password = opts.User, opts.Password
		if r.user == "" {
			r.user = "baton"
		}
		if r.password == "" {
			r.password = UniqueName("pw-")
		}
		// MinCost: the registry checks the hash on every request.
		hash, err := bcrypt.GenerateFromPassword([]byte(r.password), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("registry: htpasswd: %v", err)
		}
		if err := os.WriteFile(filepath.Join(r.dir, "htpasswd"), []byte(r.user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatalf("registry: htpasswd: %v", err)
		}
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	// The port is picked before the registry binds it; on a lost race, retry.
	var err error
	for range 3 {
		r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		if err = r.start(t.Context()); err == nil {
			return r
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("%v", err)
	return nil
}

// Start starts a stopped registry again on the same address and storage.
func (r *Registry) Start(t TB) {
	t.Helper()
	if err := r.start(t.Context()); err != nil {
		t.Fatalf("%v", err)
	}
}

func (r *Registry) start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return nil
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
`, filepath.Join(r.dir, "data"), r.addr, UniqueName("secret-"))
	if r.auth {
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: baton-test\n    path: %s\n", filepath.Join(r.dir, "htpasswd"))
	}
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("registry %s: config: %w", r.addr, err)
	}
	p, err := startProcess(r.logPath, r.bin, "serve", r.cfgPath)
	if err != nil {
		return fmt.Errorf("registry %s: %w", r.addr, err)
	}
	ready := func(resp *http.Response) bool {
		return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
	}
	if err := p.waitHTTP(ctx, "http://"+r.addr+"/v2/", 15*time.Second, ready); err != nil {
		return fmt.Errorf("registry %s: %w", r.addr, errors.Join(err, p.stop(syscall.SIGTERM, 5*time.Second)))
	}
	r.proc = p
	return nil
}

// Stop stops the registry (to play "registry down"); Start brings it back.
func (r *Registry) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	err := r.proc.stop(syscall.SIGTERM, 5*time.Second)
	r.proc = nil
	if err != nil {
		return fmt.Errorf("registry %s: stop: %w", r.addr, err)
	}
	return nil
}

// Addr returns "127.0.0.1:PORT", the registry part of image references.
func (r *Registry) Addr() string { return r.addr }

// Log returns the path of the registry's log file.
func (r *Registry) Log() string { return r.logPath }

// Auth returns the credentials (zero without auth).
func (r *Registry) Auth() registry.AuthConfig {
	if !r.auth {
		return registry.AuthConfig{}
	}
	return registry.AuthConfig{Username: r.user, Password: r.password, ServerAddress: r.addr}
}

// AuthHeader returns the X-Registry-Auth value for ImagePush/ImagePull:
// the encoded credentials, or an encoded empty config without auth (old
// daemons want the header either way).
func (r *Registry) AuthHeader() string {
	// Encoding a struct of strings cannot fail.
	h, _ := registry.EncodeAuthConfig(r.Auth())
	return h
}

// Push tags localRef as Addr()/repoTag, pushes it and returns that reference.
// The new local tag is removed in a cleanup.
func (r *Registry) Push(t TB, cli *client.Client, localRef, repoTag string) string {
	t.Helper()
	ref := r.addr + "/" + repoTag
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := cli.ImageTag(ctx, localRef, ref); err != nil {
		t.Fatalf("image %s: tag as %s: %v", localRef, ref, err)
	}
	t.Cleanup(func() { removeImage(t, cli, ref) })
	rc, err := cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: r.AuthHeader()})
	if err != nil {
		t.Fatalf("image %s: push: %v", ref, err)
	}
	defer rc.Close()
	if err := ReadJSONStream(rc); err != nil {
		t.Fatalf("image %s: push: %v", ref, err)
	}
	return ref
}

// DockerConfigDir writes a directory to use as DOCKER_CONFIG whose
// config.json holds the registry's credentials the way `docker login` does.
func (r *Registry) DockerConfigDir(t TB) string {
	t.Helper()
	auths := map[string]map[string]string{}
	if r.auth {
		auths[r.addr] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(r.user + ":" + r.password))}
	}
	b, err := json.MarshalIndent(map[string]any{"auths": auths}, "", "\t")
	if err != nil {
		t.Fatalf("docker config: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatalf("docker config: %v", err)
	}
	return dir
}

// manifestTypes are the media types a pull accepts for a tag: an image's
// manifest, or an index of them (the containerd image store pushes one).
var manifestTypes = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// Digest returns the digest of what repoTag ("repo:tag") names in the
// registry, as a pull would resolve it: on the containerd image store that
// is the pulled image's ID.
func (r *Registry) Digest(t TB, repoTag string) string {
	t.Helper()
	repo, tag, ok := strings.Cut(repoTag, ":")
	if !ok {
		t.Fatalf("registry digest: %q is not repo:tag", repoTag)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+r.addr+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatalf("registry digest of %s: %v", repoTag, err)
	}
	req.Header.Set("Accept", strings.Join(manifestTypes, ", "))
	if r.auth {
		req.SetBasicAuth(r.user, r.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("registry digest of %s: %v", repoTag, err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatalf("registry digest of %s: %v", repoTag, err)
	}
	d := resp.Header.Get("Docker-Content-Digest")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("registry digest of %s: %s, digest %q", repoTag, resp.Status, d)
	}
	return d
}
