package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/bench"
)

// TestCompareReadsWhatJSONWrote: `make bench` writes one report per engine
// with -json, then prints them side by side with -compare; this is that
// path, through the files, with each engine's numbers in its own column.
func TestCompareReadsWhatJSONWrote(t *testing.T) {
	dir := t.TempDir()
	debian := &bench.Report{Engine: bench.Engine{Version: "20.10.24", API: "1.41", Store: "fuse-overlayfs"}, Deploys: 2, Modes: []*bench.ModeReport{
		{Mode: bench.ModeRelayHost, Deploys: make([]bench.Deploy, 2), Requests: 1000, DeployP50: 3 * time.Second, DeployMax: 4 * time.Second},
	}}
	current := &bench.Report{Engine: bench.Engine{Version: "2.0.0-beta.24", API: "1.56", Store: "containerd image store"}, Deploys: 2, Modes: []*bench.ModeReport{
		{Mode: bench.ModeRelayHost, Deploys: make([]bench.Deploy, 2), Requests: 2000, Failed: 1, DeployP50: 5 * time.Second, DeployMax: 6 * time.Second},
	}}
	a, b := filepath.Join(dir, "bench-debian.json"), filepath.Join(dir, "bench-current.json")
	for path, rep := range map[string]*bench.Report{a: debian, b: current} {
		if err := writeJSON(path, rep); err != nil {
			t.Fatal(err)
		}
	}

	var stdout, stderr strings.Builder
	if code := run(context.Background(), []string{"-compare", a + "," + b}, &stdout, &stderr); code != 0 {
		t.Fatalf("-compare: exit %d, stderr %q", code, stderr.String())
	}
	text := stdout.String()
	for _, want := range []string{"[1] Docker 20.10.24 (API 1.41, fuse-overlayfs)", "[2] Docker 2.0.0-beta.24 (API 1.56, containerd image store)"} {
		if !strings.Contains(text, want) {
			t.Errorf("legend lacks %q:\n%s", want, text)
		}
	}
	var row []string
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "relay-host" {
			row = f
		}
	}
	if want := []string{"relay-host", "0/1000", "1/2000", "3.0s/4.0s", "5.0s/6.0s"}; len(row) < 5 || !slices.Equal(row[:5], want) {
		t.Errorf("relay-host row %q, want it to start %q:\n%s", row, want, text)
	}

	// A file that is missing, or that -json did not write, is a usage
	// error naming it, and nothing is printed as if it were a table.
	notReport := filepath.Join(dir, "other.json")
	if err := os.WriteFile(notReport, []byte("[1,2]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, files := range []string{a + "," + filepath.Join(dir, "missing.json"), notReport + "," + b} {
		stdout.Reset()
		stderr.Reset()
		if code := run(context.Background(), []string{"-compare", files}, &stdout, &stderr); code != 2 {
			t.Errorf("-compare %s: exit %d, want 2 (stderr %q)", files, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "baton-bench: -compare: ") || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
			t.Errorf("-compare %s: stderr %q, want one line naming the problem", files, stderr.String())
		}
		if strings.Contains(stdout.String(), "relay-host") {
			t.Errorf("-compare %s printed a table: %q", files, stdout.String())
		}
	}
}
