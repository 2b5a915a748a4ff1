package dockerctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/context/docker"
	"github.com/docker/cli/cli/context/store"
)

// dockerConfig points the docker CLI's packages at a fresh config
// directory holding contexts (name -> host) and, if current is set, a
// config.json whose currentContext is current (what `docker context use`
// writes). It clears the environment that would choose another engine.
func dockerConfig(t *testing.T, current string, contexts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	// The docker CLI reads DOCKER_CONFIG once per process; set it directly.
	prev := config.Dir()
	config.SetDir(dir)
	t.Cleanup(func() { config.SetDir(prev) })
	for _, k := range []string{"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_TLS", "DOCKER_CERT_PATH"} {
		t.Setenv(k, "")
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	s := store.New(config.ContextStoreDir(), contextStoreConfig())
	for name, host := range contexts {
		err := s.CreateOrUpdate(store.Metadata{Name: name, Endpoints: map[string]any{
			docker.DockerEndpoint: docker.EndpointMeta{Host: host},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if current != "" {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"currentContext": "`+current+`"}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestResolveEndpointOrder(t *testing.T) {
	contexts := map[string]string{
		"used":  "unix:///run/used.sock",
		"envd":  "tcp://10.1.2.3:2375",
		"named": "ssh://deploy@web1",
	}
	cases := []struct {
		name, flag, current, dockerHost, dockerContext string
		wantName, wantHost                             string
		wantLocal                                      bool
	}{
		{name: "nothing set: the default socket", wantName: DefaultContext, wantHost: "unix:///var/run/docker.sock", wantLocal: true},
		{name: "docker context use", current: "used", wantName: "used", wantHost: "unix:///run/used.sock", wantLocal: true},
		{name: "DOCKER_CONTEXT beats docker context use", current: "used", dockerContext: "envd", wantName: "envd", wantHost: "tcp://10.1.2.3:2375"},
		{name: "DOCKER_HOST beats DOCKER_CONTEXT", current: "used", dockerContext: "envd", dockerHost: "tcp://127.0.0.1:2375", wantName: EnvContext, wantHost: "tcp://127.0.0.1:2375", wantLocal: true},
		{name: "the flag beats everything", flag: "named", current: "used", dockerContext: "envd", dockerHost: "tcp://127.0.0.1:2375", wantName: "named", wantHost: "ssh://deploy@web1"},
		{name: "the default context by name", flag: "default", current: "used", wantName: DefaultContext, wantHost: "unix:///var/run/docker.sock", wantLocal: true},
		{name: "DOCKER_HOST ssh", dockerHost: "ssh://u@10.0.0.9", wantName: EnvContext, wantHost: "ssh://u@10.0.0.9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dockerConfig(t, tc.current, contexts)
			if tc.dockerHost != "" {
				t.Setenv("DOCKER_HOST", tc.dockerHost)
			}
			if tc.dockerContext != "" {
				t.Setenv("DOCKER_CONTEXT", tc.dockerContext)
			}
			ep, err := ResolveEndpoint(tc.flag)
			if err != nil {
				t.Fatal(err)
			}
			if ep.Name != tc.wantName || ep.Host != tc.wantHost || ep.Local != tc.wantLocal {
				t.Errorf("got %q %q local=%v, want %q %q local=%v", ep.Name, ep.Host, ep.Local, tc.wantName, tc.wantHost, tc.wantLocal)
			}
		})
	}
}

func TestResolveEndpointUnknownContext(t *testing.T) {
	dir := dockerConfig(t, "", map[string]string{"real": "unix:///run/real.sock"})
	_, err := ResolveEndpoint("nope")
	if !errors.Is(err, ErrUnknownContext) {
		t.Fatalf("unknown context: got %v, want ErrUnknownContext", err)
	}
	if want := `docker context "nope"`; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q should name the context and the store under %s", err, dir)
	}
	// The current context of `docker context use` is checked the same way.
	dockerConfig(t, "gone", nil)
	if _, err := ResolveEndpoint(""); !errors.Is(err, ErrUnknownContext) {
		t.Errorf("a current context that is gone: got %v, want ErrUnknownContext", err)
	}
	// Control: the context that exists resolves.
	dockerConfig(t, "", map[string]string{"real": "unix:///run/real.sock"})
	if ep, err := ResolveEndpoint("real"); err != nil || ep.Host != "unix:///run/real.sock" {
		t.Errorf("existing context: %+v, %v", ep, err)
	}
}

func TestResolveEndpointTLSFromEnv(t *testing.T) {
	dockerConfig(t, "", nil)
	certs := t.TempDir()
	t.Setenv("DOCKER_HOST", "tcp://10.9.9.9:2376")
	t.Setenv("DOCKER_TLS_VERIFY", "1")
	t.Setenv("DOCKER_CERT_PATH", certs)
	// No ca.pem: the docker CLI refuses too.
	if _, err := ResolveEndpoint(""); err == nil || !strings.Contains(err.Error(), certs) {
		t.Fatalf("missing ca.pem: got %v, want an error naming %s", err, certs)
	}
	if err := os.WriteFile(filepath.Join(certs, "ca.pem"), []byte("not a pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep, err := ResolveEndpoint("")
	if err != nil {
		t.Fatal(err)
	}
	if ep.ep.TLSData == nil || string(ep.ep.TLSData.CA) != "not a pem" || ep.ep.SkipTLSVerify || ep.Local {
		t.Errorf("TLS endpoint: %+v", ep)
	}
	// The CA is used (and found invalid) when the client is made.
	if _, err := ep.ep.ClientOpts(); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Errorf("client options with a bad ca.pem: %v", err)
	}
	set, _ := ep.ChildEnv()
	if set != nil {
		t.Errorf("the environment already names this engine; ChildEnv set %v", set)
	}
}

func TestIsLocalHost(t *testing.T) {
	for host, want := range map[string]bool{
		"unix:///var/run/docker.sock": true,
		"tcp://127.0.0.1:2375":        true,
		"tcp://localhost:2375":        true,
		"tcp://[::1]:2375":            true,
		"tcp://10.0.0.1:2375":         false,
		"ssh://u@127.0.0.1":           false,
		"ssh://u@web1":                false,
	} {
		if got := isLocalHost(host); got != want {
			t.Errorf("isLocalHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestChildEnvPinsTheEngine: after ChildEnv is applied, a child resolving
// the engine the docker CLI's way (ResolveEndpoint("") reads DOCKER_HOST,
// DOCKER_CONTEXT, then `docker context use`) reaches the engine baton
// chose, whichever way it was chosen, even with another context current.
func TestChildEnvPinsTheEngine(t *testing.T) {
	contexts := map[string]string{
		"prod":  "tcp://10.1.2.3:2375",
		"stage": "unix:///run/stage.sock",
	}
	cases := []struct {
		name, flag, dockerHost, dockerContext string
		wantHost                              string
	}{
		{name: "--context default while prod is current", flag: "default", wantHost: "unix:///var/run/docker.sock"},
		{name: "--context default while DOCKER_CONTEXT names prod", flag: "default", dockerContext: "prod", wantHost: "unix:///var/run/docker.sock"},
		{name: "--context stage while prod is current", flag: "stage", wantHost: "unix:///run/stage.sock"},
		{name: "--context stage while DOCKER_HOST is set", flag: "stage", dockerHost: "tcp://127.0.0.1:2375", wantHost: "unix:///run/stage.sock"},
		{name: "DOCKER_HOST", dockerHost: "tcp://127.0.0.1:2375", wantHost: "tcp://127.0.0.1:2375"},
		{name: "the current context", wantHost: "tcp://10.1.2.3:2375"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dockerConfig(t, "prod", contexts)
			if tc.dockerHost != "" {
				t.Setenv("DOCKER_HOST", tc.dockerHost)
			}
			if tc.dockerContext != "" {
				t.Setenv("DOCKER_CONTEXT", tc.dockerContext)
			}
			ep, err := ResolveEndpoint(tc.flag)
			if err != nil {
				t.Fatal(err)
			}
			if ep.Host != tc.wantHost {
				t.Fatalf("baton's engine: %s, want %s", ep.Host, tc.wantHost)
			}
			set, unset := ep.ChildEnv()
			for k, v := range set {
				t.Setenv(k, v)
			}
			for _, k := range unset {
				t.Setenv(k, "")
				if err := os.Unsetenv(k); err != nil {
					t.Fatal(err)
				}
			}
			child, err := ResolveEndpoint("")
			if err != nil {
				t.Fatalf("a child's engine: %v", err)
			}
			if child.Host != tc.wantHost {
				t.Errorf("a child (set %v, unset %v) reaches %s (%s); baton talks to %s", set, unset, child.Host, child.Name, tc.wantHost)
			}
		})
	}
}
