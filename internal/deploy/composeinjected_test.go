package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestComposeInjectedHostileLabels: the compose files are named by the
// container's labels, which whoever ran the container chose. A FIFO does
// not block, a device and an oversized file are refused, and a file that
// is not YAML is named without quoting its bytes; beside them, the same
// labels naming a real compose file still work (positive control).
func TestComposeInjectedHostileLabels(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(good, []byte("services:\n  web:\n    configs: [c]\nconfigs:\n  c:\n    content: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# filler\n"), maxComposeFile/9+2), 0o644); err != nil {
		t.Fatal(err)
	}
	const secret = "s3cr3t-passw0rd-value"
	notYAML := filepath.Join(dir, "shadow")
	if err := os.WriteFile(notYAML, []byte("services: "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	labels := func(file string) map[string]string {
		return map[string]string{
			composeConfigFiles:             file,
			composeWorkingDir:              dir,
			composeLabelPrefix + "project": "shop",
			composeLabelPrefix + "service": "web",
		}
	}
	if got, err := composeInjected(labels(good)); err != nil || len(got) != 1 {
		t.Fatalf("positive control: %v %v, want the one content: config", got, err)
	}
	for _, tc := range []struct{ file, want string }{
		{fifo, "not a regular file"},
		{"/dev/zero", "not a regular file"},
		{big, "larger than 4 MiB"},
		{notYAML, "invalid YAML"},
	} {
		done := make(chan error, 1)
		go func() { _, err := composeInjected(labels(tc.file)); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one saying %q", tc.file, err, tc.want)
			} else if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: the error quotes the file or spans lines: %v", tc.file, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still reading after 5 s", tc.file)
		}
	}
}
