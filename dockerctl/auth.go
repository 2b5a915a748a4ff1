package dockerctl

import (
	"fmt"
	"io"

	"github.com/distribution/reference"
	"github.com/docker/cli/cli/config"
	"github.com/docker/docker/api/types/registry"
)

// dockerHubAuthKey is the key under which the docker CLI stores Docker Hub
// credentials; every other registry is keyed by its host name.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// RegistryAuth returns the X-Registry-Auth header value for pulling ref, read
// the way the docker CLI reads it: config.json in DOCKER_CONFIG (or
// ~/.docker), including credential helpers and credsStore. An image on a
// registry with no stored credentials gets an empty header (anonymous pull).
func RegistryAuth(ref string, stderr io.Writer) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	key := reference.Domain(named)
	if key == "docker.io" {
		key = dockerHubAuthKey
	}
	cfg := config.LoadDefaultConfigFile(stderr)
	ac, err := cfg.GetAuthConfig(key)
	if err != nil {
		return "", fmt.Errorf("reading credentials for %s from the docker config: %w", key, err)
	}
	if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return "", nil
	}
	return registry.EncodeAuthConfig(registry.AuthConfig{
		Username:      ac.Username,
		Password:      ac.Password,
		Auth:          ac.Auth,
		ServerAddress: ac.ServerAddress,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	})
}
