package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/deploy"
)

func write(t *testing.T, dir, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, "baton.conf")
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := write(t, dir, "# baton\nnginx-reload = nginx -s reload\nupstream-dir = /srv/nginx/\nupstream-dir=/opt/up\ndrain = 10s\n", 0o644)
	f, err := Load(p, true)
	if err != nil {
		t.Fatalf("a root-owned 0644 file (positive control): %v", err)
	}
	if f.Settings["nginx-reload"] != "nginx -s reload" || f.Settings["drain"] != "10s" || strings.Join(f.UpstreamDirs, ",") != "/srv/nginx,/opt/up" {
		t.Fatalf("parsed %+v", f)
	}

	if f, err := Load(filepath.Join(dir, "missing.conf"), false); err != nil || len(f.Settings) != 0 {
		t.Fatalf("a missing default file is an empty configuration: %+v %v", f, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.conf"), true); err == nil {
		t.Fatal("a missing file the operator named is an error")
	}

	write(t, dir, "nginx-reload = touch /tmp/x\n", 0o666)
	if _, err := Load(p, true); err == nil || !errors.Is(err, deploy.ErrInvalid) || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("a world-writable file: %v", err)
	}
	write(t, dir, "nginx-reload = x\n", 0o600)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, true); err == nil || !strings.Contains(err.Error(), "directory of configuration file") {
		t.Fatalf("a world-writable directory: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 1234, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p, true); err == nil || !strings.Contains(err.Error(), "owned by uid 1234") {
			t.Fatalf("a file owned by someone else: %v", err)
		}
	}
}

func TestParseRefusesUnknownNames(t *testing.T) {
	for _, body := range []string{"hook = rm -rf /\n", "upstream-dir = relative\n", "just words\n"} {
		if _, err := Parse("/etc/baton/baton.conf", []byte(body)); err == nil || !errors.Is(err, deploy.ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", body, err)
		}
	}
}

// The example in the README parses as it says.
func TestParseReadmeExample(t *testing.T) {
	f, err := Parse("/etc/baton/baton.conf", []byte("# /etc/baton/baton.conf\nnginx-reload = nginx -s reload\nupstream-dir = /etc/nginx/conf.d/baton\ndrain = 20s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Settings["nginx-reload"] != "nginx -s reload" || f.Settings["drain"] != "20s" || len(f.UpstreamDirs) != 1 || f.UpstreamDirs[0] != "/etc/nginx/conf.d/baton" {
		t.Fatalf("parsed %+v", f)
	}
	res, err := deploy.Policy{Config: f.Settings, UpstreamDirs: f.UpstreamDirs}.Resolve(deploy.Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/conf.d/baton/web.conf"}})
	if err != nil || res.Settings.NginxReload != "nginx -s reload" || res.Settings.Drain.String() != "20s" {
		t.Fatalf("resolved %+v, %v", res.Settings, err)
	}
}
