package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/deploy"
)

// zeroIsTheDefault lists the flags whose zero value shown in help is really
// what happens when the flag is not given (nor, for a setting, its label).
var zeroIsTheDefault = map[string]string{
	"warmup-requests":    "no warm-up requests unless asked",
	"tcp-probe":          "no TCP probe unless asked",
	"kernel-path":        "traffic goes through the relay unless asked",
	"docker-health-only": "baton runs the HEALTHCHECK early unless told not to",
	"update-delay":       "Swarm service updates: no wait between batches unless asked",
}

var (
	defaultRe  = regexp.MustCompile(`\(default: ([^)]*)\)`)
	flagLineRe = regexp.MustCompile(`^\s+(--[a-z0-9-]+)`)
)

// TestHelpDefaults renders every command's help and fails on a flag that
// shows two defaults, or a zero default that is not what baton does.
func TestHelpDefaults(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	paths := append([]string{""}, sortedKeys(allCommands(app))...)
	settings := map[string]bool{}
	for _, n := range deploy.SettingNames() {
		settings[n] = true
	}
	want := map[string]string{
		"health-timeout": deploy.DefaultSettings().HealthTimeout.String(),
		"drain":          deploy.DefaultSettings().Drain.String(),
	}
	seenSettings := 0
	for _, path := range paths {
		var stdout, stderr bytes.Buffer
		args := append([]string{"baton"}, strings.Fields(path)...)
		code := Run(context.Background(), append(args, "--help"), &stdout, &stderr)
		if code != 0 || stdout.Len() == 0 {
			t.Fatalf("baton %s --help: exit %d, stdout %d bytes, stderr %q", path, code, stdout.Len(), stderr.String())
		}
		flagLines := 0
		for _, line := range strings.Split(stdout.String(), "\n") {
			m := flagLineRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			flagLines++
			name := strings.TrimPrefix(m[1], "--")
			if n := strings.Count(strings.ToLower(line), "default"); n > 1 {
				t.Errorf("baton %s --help: %s names %d defaults: %q", path, m[1], n, strings.TrimSpace(line))
			}
			d := defaultRe.FindStringSubmatch(line)
			shown := ""
			if d != nil {
				shown = d[1]
			}
			if w, ok := want[name]; ok && shown != w {
				t.Errorf("baton %s --help: %s shows default %q, baton uses %q", path, m[1], shown, w)
			}
			zero := shown == "0" || shown == "0s" || shown == `""`
			if settings[name] {
				seenSettings++
				zero = zero || shown == "false"
			}
			if _, ok := zeroIsTheDefault[name]; zero && !ok {
				t.Errorf("baton %s --help: %s shows the zero default %q, which is not what baton does (set DefaultText, or list it in zeroIsTheDefault with why)", path, m[1], shown)
			}
		}
		if path != "" && flagLines == 0 {
			t.Errorf("baton %s --help: no flag lines found; the help format changed and this test checks nothing", path)
		}
	}
	// Control: the settings flags were among the lines checked.
	if seenSettings < len(settings) {
		t.Errorf("checked %d setting flag lines, want at least %d", seenSettings, len(settings))
	}
}
