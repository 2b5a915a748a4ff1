package healthcheck

import "github.com/docker/docker/api/types/container"

// HasDockerHealthcheck reports whether cfg configures a HEALTHCHECK that
// Docker will run, that is Spec.DockerHealth can be used. Pass the Config of
// an inspected container (the daemon merges the image's HEALTHCHECK into it
// at create); an empty Test there means none, and ["NONE"] means disabled.
func HasDockerHealthcheck(cfg *container.Config) bool {
	if cfg == nil || cfg.Healthcheck == nil || len(cfg.Healthcheck.Test) == 0 {
		return false
	}
	return cfg.Healthcheck.Test[0] != "NONE"
}
