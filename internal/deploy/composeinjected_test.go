package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestComposeInjected: the configs and secrets compose copies into a
// container (content: and environment: sources) are named, with their
// targets, across the project's files; file: sources (bind mounts, which
// a clone copies) and other services' are not; unreadable files are an
// error, and a container compose did not make has none.
func TestComposeInjected(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("compose.yaml", `
services:
  web:
    image: web:1
    configs:
      - inline
      - source: fromfile
        target: /etc/fromfile.conf
    secrets:
      - envsecret
      - source: filesecret
  other:
    image: other:1
    configs: [other]
configs:
  inline:
    content: "hello ${UNSET_HERE}"
  fromfile:
    file: ./cfg.txt
  other:
    content: x
secrets:
  envsecret:
    environment: SECRET
  filesecret:
    file: ./cfg.txt
`)
	write("override.yaml", `
services:
  web:
    configs:
      - source: late
        target: /etc/late.conf
configs:
  late:
    environment: LATE
`)
	labels := map[string]string{
		composeConfigFiles:             filepath.Join(dir, "compose.yaml") + ",override.yaml",
		composeWorkingDir:              dir,
		composeLabelPrefix + "project": "shop",
		composeLabelPrefix + "service": "web",
	}
	got, err := composeInjected(labels)
	if err != nil {
		t.Fatal(err)
	}
	want := "config inline (content:) at /inline; config late (environment:) at /etc/late.conf; secret envsecret (environment:) at /run/secrets/envsecret"
	if strings.Join(got, "; ") != want {
		t.Fatalf("composeInjected:\n got %s\nwant %s", strings.Join(got, "; "), want)
	}
	// Positive control: file sources alone are nothing to report.
	write("files.yaml", "services:\n  web:\n    configs: [fromfile]\nconfigs:\n  fromfile:\n    file: ./cfg.txt\n")
	labels[composeConfigFiles] = "files.yaml"
	if got, err := composeInjected(labels); err != nil || len(got) != 0 {
		t.Fatalf("file sources only: %v %v, want none", got, err)
	}
	labels[composeConfigFiles] = "missing.yaml"
	if _, err := composeInjected(labels); err == nil {
		t.Fatal("a missing compose file gave no error")
	}
	if got, err := composeInjected(map[string]string{"app": "x"}); err != nil || got != nil {
		t.Fatalf("a container compose did not make: %v %v", got, err)
	}
}
