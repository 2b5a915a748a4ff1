package dockerctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/connhelper"
	dcontext "github.com/docker/cli/cli/context"
	"github.com/docker/cli/cli/context/docker"
	"github.com/docker/cli/cli/context/store"
	dopts "github.com/docker/cli/opts"
	"github.com/docker/docker/client"
)

// The names an Endpoint carries when it is not a stored context.
const (
	// DefaultContext is the docker CLI's name for the engine it talks to
	// with no context chosen: the default socket.
	DefaultContext = "default"
	// EnvContext names the engine DOCKER_HOST chose (the docker CLI calls
	// it "default" too; baton says where it came from).
	EnvContext = "env"
)

// The docker CLI's environment, read as the CLI reads it.
const (
	envContext   = "DOCKER_CONTEXT"
	envCertPath  = "DOCKER_CERT_PATH"
	envTLSVerify = "DOCKER_TLS_VERIFY"
	envTLS       = "DOCKER_TLS"
)

// ErrUnknownContext is returned by ResolveEndpoint for a context the docker
// CLI's context store does not hold.
var ErrUnknownContext = errors.New("no such docker context")

// Endpoint is a Docker engine as the docker CLI would reach it: a stored
// context (`docker context create`), or the default one (DOCKER_HOST, its
// TLS variables, or the default socket).
type Endpoint struct {
	// Name is the context's name, DefaultContext or EnvContext.
	Name string
	// Host is the engine's URL: unix:///var/run/docker.sock,
	// tcp://host:2376, ssh://user@host.
	Host string
	// Local reports whether the addresses of the engine's containers are
	// reachable from this process: true for a unix socket and for TCP to a
	// loopback address; false for ssh:// and TCP to another machine, where
	// baton reaches containers through the engine instead (see
	// Client.DialContainer).
	Local bool

	ep docker.Endpoint // TLS material and the connection helper's URL
}

// String names the engine for messages: `docker context "prod"
// (ssh://deploy@web1)`, `DOCKER_HOST=tcp://10.0.0.2:2376`, `the default
// docker engine (unix:///var/run/docker.sock)`.
func (e Endpoint) String() string {
	switch e.Name {
	case DefaultContext:
		return "the default docker engine (" + e.Host + ")"
	case EnvContext:
		return "DOCKER_HOST=" + e.Host
	}
	if e.Name == HostsFileEngine {
		return "the engine at " + e.Host + " (docker-host= in the hosts file)"
	}
	return fmt.Sprintf("docker context %q (%s)", e.Name, e.Host)
}

// ResolveEndpoint finds the engine the docker CLI would talk to. An empty
// name is the CLI's own choice, in its order: DOCKER_HOST, then
// DOCKER_CONTEXT, then the current context of `docker context use`, then
// the default socket. A name is a stored context (or "default"). The
// docker CLI's own packages read its config and context store (under
// DOCKER_CONFIG or ~/.docker), so baton and `docker` agree.
func ResolveEndpoint(name string) (Endpoint, error) {
	if name == "" {
		name = currentContextName()
	}
	if name == DefaultContext {
		return defaultEndpoint()
	}
	if err := store.ValidateContextName(name); err != nil {
		return Endpoint{}, fmt.Errorf("docker context %q: %w", name, err)
	}
	s := store.New(config.ContextStoreDir(), contextStoreConfig())
	meta, err := s.GetMetadata(name)
	if errdefs.IsNotFound(err) {
		return Endpoint{}, fmt.Errorf("docker context %q: %w (docker context ls lists them; the store is %s)", name, ErrUnknownContext, config.ContextStoreDir())
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("docker context %q: %w", name, err)
	}
	epMeta, err := docker.EndpointFromContext(meta)
	if err != nil {
		return Endpoint{}, fmt.Errorf("docker context %q: %w", name, err)
	}
	ep, err := docker.WithTLSData(s, name, epMeta)
	if err != nil {
		return Endpoint{}, fmt.Errorf("docker context %q: TLS material: %w", name, err)
	}
	if ep.Host == "" {
		return Endpoint{}, fmt.Errorf("docker context %q names no docker host", name)
	}
	return Endpoint{Name: name, Host: ep.Host, Local: isLocalHost(ep.Host), ep: ep}, nil
}

// currentContextName is the docker CLI's choice of context when none is
// named (command.resolveContextName, which is not exported).
func currentContextName() string {
	if os.Getenv(client.EnvOverrideHost) != "" {
		return DefaultContext
	}
	if name := os.Getenv(envContext); name != "" {
		return name
	}
	if cfg := config.LoadDefaultConfigFile(io.Discard); cfg != nil && cfg.CurrentContext != "" {
		return cfg.CurrentContext
	}
	return DefaultContext
}

// contextStoreConfig types the docker endpoint of a stored context, as the
// docker CLI's DefaultContextStoreConfig does; the context's own metadata
// (its description) is left untyped.
func contextStoreConfig() store.Config {
	return store.NewConfig(
		func() any { return &map[string]any{} },
		store.EndpointTypeGetter(docker.DockerEndpoint, func() any { return &docker.EndpointMeta{} }),
	)
}

// defaultEndpoint is the default context: DOCKER_HOST (or the default
// socket) with DOCKER_TLS_VERIFY / DOCKER_TLS and the certificates in
// DOCKER_CERT_PATH (or the docker config directory), as the docker CLI
// reads them with no flags given.
func defaultEndpoint() (Endpoint, error) {
	env := os.Getenv(client.EnvOverrideHost)
	verify := os.Getenv(envTLSVerify) != ""
	useTLS := verify || os.Getenv(envTLS) != ""
	host, err := dopts.ParseHost(useTLS, env)
	if err != nil {
		return Endpoint{}, fmt.Errorf("DOCKER_HOST %q: %w", env, err)
	}
	name := DefaultContext
	if env != "" {
		name = EnvContext
	}
	ep := docker.Endpoint{EndpointMeta: docker.EndpointMeta{Host: host}}
	if useTLS {
		dir := os.Getenv(envCertPath)
		if dir == "" {
			dir = config.Dir()
		}
		ca, cert, key := filepath.Join(dir, "ca.pem"), existing(filepath.Join(dir, "cert.pem")), existing(filepath.Join(dir, "key.pem"))
		ep.TLSData, err = dcontext.TLSDataFromFiles(ca, cert, key)
		if err != nil {
			return Endpoint{}, fmt.Errorf("engine %s: TLS material (DOCKER_CERT_PATH=%s): %w", host, dir, err)
		}
		ep.SkipTLSVerify = !verify
	}
	return Endpoint{Name: name, Host: host, Local: isLocalHost(host), ep: ep}, nil
}

// existing is path if a file is there, else "" (the docker CLI drops a
// default client certificate or key that does not exist).
func existing(path string) string {
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// isLocalHost reports whether an engine at host runs where this process
// does, so its containers' addresses are reachable from here.
func isLocalHost(host string) bool {
	u, err := url.Parse(host)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "unix", "npipe", "fd":
		return true
	case "tcp", "http", "https":
		h := u.Hostname()
		if h == "localhost" {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	return false
}

// NewFromEndpoint connects to the engine ep names (TLS and ssh:// through
// the docker CLI's own client options and connection helper) and
// negotiates the API version up front, so that version-dependent choices
// made later (see APIVersionAtLeast) see the real one.
func NewFromEndpoint(ctx context.Context, ep Endpoint) (*Client, error) {
	opts, err := ep.ep.ClientOpts()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ep, err)
	}
	if helper, err := connhelper.GetConnectionHelper(ep.Host); err == nil && helper != nil {
		// Every new connection through the helper is an ssh session and a
		// `docker system dial-stdio` on the other side: keep more of them
		// for reuse than net/http's default 2, since a deploy's health wait
		// holds an event stream while it inspects and execs.
		opts = append(opts, client.WithHTTPClient(&http.Client{
			Transport: &http.Transport{DialContext: helper.Dialer, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second},
		}))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: docker client: %w", ep, err)
	}
	if _, err := c.Ping(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%s: cannot reach the Docker engine (is it running, and may this user use it?): %s", ep, oneLineErr(err))
	}
	c.NegotiateAPIVersion(ctx)
	return &Client{Client: c, Endpoint: ep}, nil
}

// oneLineErr folds an error (ssh's stderr can span lines) onto one line.
func oneLineErr(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// ChildEnv is the environment that makes the docker CLI, compose and
// hooks run by baton talk to this engine too: DOCKER_HOST for an engine
// reached without TLS material, else its context by name. DOCKER_HOST and
// DOCKER_CONTEXT left as they are would name another engine after
// --context (compose v1 reads neither DOCKER_CONTEXT nor the flag).
//
// The default engine is pinned too (DOCKER_CONTEXT=default, no
// DOCKER_HOST): with `docker context use prod` in effect, `baton --context
// default` would otherwise check the local engine while its children
// followed the current context to prod; and a long-running watch would
// follow a `docker context use` made after it started.
func (e Endpoint) ChildEnv() (set map[string]string, unset []string) {
	switch {
	case e.Name == EnvContext:
		return nil, nil // DOCKER_HOST says it already, and beats DOCKER_CONTEXT
	case e.Name == DefaultContext:
		return map[string]string{envContext: DefaultContext}, []string{client.EnvOverrideHost}
	case e.ep.TLSData == nil && !e.ep.SkipTLSVerify:
		return map[string]string{client.EnvOverrideHost: e.Host}, []string{envContext}
	default:
		return map[string]string{envContext: e.Name}, []string{client.EnvOverrideHost}
	}
}
