package redact

import "strings"

// childKeep lists the BATON_* variables a child process may inherit: they
// configure where baton keeps its state and which containers it manages,
// and are no secret. Every other inherited BATON_* variable (the webhook
// token and secret, the notification URL and secret, and any added later)
// is dropped, so a hook or a reload command cannot print or pass one on.
var childKeep = map[string]bool{
	"BATON_STATE_DIR": true,
	"BATON_SCOPE":     true,
}

// childDrop lists other variables that point at secrets: systemd's
// directory of the unit's credentials (LoadCredential=).
var childDrop = map[string]bool{
	"CREDENTIALS_DIRECTORY": true,
}

// Environ returns env without secret variables, for a child process
// (hooks, the nginx reload command, the compose tool). The deploy's own
// BATON_* details are added by the caller after this.
func Environ(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if childDrop[name] || (strings.HasPrefix(name, "BATON_") && !childKeep[name]) {
			continue
		}
		out = append(out, kv)
	}
	return out
}
