package healthcheck

import (
	"strings"
	"testing"
)

// What a container wrote (log lines, health check output, an HTTP answer)
// reaches the operator's terminal in a failed deploy's error: its escape
// sequences are shown escaped, never sent to the terminal. Plain text,
// tabs and (in the multi-line form) newlines are kept as they are.
func TestFailureEscapesContainerText(t *testing.T) {
	f := &Failure{
		Container:    "web",
		Reason:       "unhealthy",
		HealthOutput: "checking\n\x1b[2K\rdeploy succeeded",
		ProbeError:   "503 Service Unavailable: \x1b]52;c;ZXZpbA==\x07",
		Logs:         []string{"plain\tlog line", "\x1b[1A\x1b[2Kall good \u009b31m"},
	}
	for name, out := range map[string]string{"Error": f.Error(), "Detail": f.Detail()} {
		for _, bad := range []string{"\x1b", "\x07", "\r", "\u009b"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s() passes %q to the terminal: %q", name, bad, out)
			}
		}
		for _, want := range []string{`\x1b[2K`, "deploy succeeded", `\x1b]52;c;ZXZpbA==\x07`, `\x1b[1A\x1b[2Kall good \x9b31m`, "plain\tlog line"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s() lacks %q: %q", name, want, out)
			}
		}
	}
	if d := f.Detail(); !strings.Contains(d, "checking\n  ") {
		t.Errorf("Detail() lost the health output's own lines: %q", d)
	}
	if e := f.Error(); strings.Contains(e, "\n") {
		t.Errorf("Error() is more than one line: %q", e)
	}
}
