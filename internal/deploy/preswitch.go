package deploy

import (
	"regexp"
	"strings"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/redact"
)

// preSwitchOutputMax bounds the output of a --pre-switch command that goes
// into an error, the journal and notifications: its tail, where a failing
// migration says why.
const preSwitchOutputMax = 2048

// secretEnvName matches environment variable names whose values are
// credentials; their values are masked in a --pre-switch command's output,
// since a failing migration often prints its connection string.
var secretEnvName = regexp.MustCompile(`(?i)(token|secret|pass|pwd|key|credential|auth|dsn|database_url)`)

// preSwitchOutput is the bounded, redacted output of a --pre-switch run:
// stdout then stderr, the last preSwitchOutputMax bytes, control characters
// other than newline and tab dropped, credentials in URLs and the values of
// the container's secret-looking variables masked.
func preSwitchOutput(res dockerctl.ExecResult, env []string) string {
	out := strings.TrimSpace(strings.TrimSpace(res.Stdout) + "\n" + strings.TrimSpace(res.Stderr))
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && len(v) >= 4 && secretEnvName.MatchString(k) {
			out = strings.ReplaceAll(out, v, redact.Mask)
		}
	}
	out = redact.Text(out)
	if len(out) > preSwitchOutputMax {
		out = "..." + out[len(out)-preSwitchOutputMax:]
	}
	out = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}
		return -1
	}, out)
	if out == "" {
		return "(no output)"
	}
	return out
}
