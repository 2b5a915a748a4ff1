package redact

import (
	"regexp"
	"strings"
)

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

// Environ returns env without secret variables, for a child process that
// baton gives its own details (hooks, the nginx reload command): every
// inherited BATON_* variable but BATON_STATE_DIR and BATON_SCOPE is dropped.
// The deploy's own BATON_* details are added by the caller after this.
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

// secretName matches the names of variables that hold a secret.
var secretName = regexp.MustCompile(`(?i)(TOKEN|SECRET|PASSW|PASSWD|CREDENTIAL|_KEY$|^BATON_NOTIFY_URL$)`)

// ToolEnviron returns env without baton's secrets, for a tool that reads
// the operator's own variables (the compose tool interpolates a compose
// file with them, and those may well be named BATON_*): it drops the
// BATON_* variables whose name says secret (BATON_WEBHOOK_TOKEN,
// BATON_WEBHOOK_SECRET, BATON_NOTIFY_SECRET, BATON_NOTIFY_URL, ...) and
// CREDENTIALS_DIRECTORY, and keeps the rest.
func ToolEnviron(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if childDrop[name] || (strings.HasPrefix(name, "BATON_") && secretName.MatchString(name)) {
			continue
		}
		out = append(out, kv)
	}
	return out
}
