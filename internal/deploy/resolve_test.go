package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/docker/docker/api/types/container"
)

// hostileLabels is what a hostile image carries: every identity label and
// every setting, with a reload command that would leave a marker.
var hostileLabels = map[string]string{
	"baton.role": "app", "baton.managed": "true", "baton.service": "web", "baton.relay": "false",
	"baton.port": "8080", "baton.nginx-upstream": "/x", "baton.nginx-reload": "touch /tmp/pwned",
	"baton.replaces": "0123456789ab", "baton.deploy-id": "abcdef", "baton.enable": "true",
	"baton.nginx-container": "victim", "baton.previous-image-id": "sha256:evil", "baton.kernel-path": "true",
	"com.docker.compose.project": "evil", "com.docker.compose.project.config_files": "/tmp/evil.yml",
}

func TestResolveProvenance(t *testing.T) {
	allowed := Policy{UpstreamDirs: []string{"/srv/nginx"}, ConfigPath: "/etc/baton/baton.conf"}
	cases := []struct {
		name    string
		policy  Policy
		src     Sources
		check   func(Resolved) string // "" when fine
		wantErr string
	}{
		{name: "an image's labels are ignored, every one of them",
			src: Sources{Labels: hostileLabels, ImageLabels: hostileLabels},
			check: func(r Resolved) string {
				if r.Settings != DefaultSettings() {
					return "settings changed by image labels"
				}
				if len(r.Ignored) != len(hostileLabels) || !slices.Contains(r.Ignored, "baton.nginx-reload=touch /tmp/pwned") {
					return "ignored list incomplete"
				}
				return ""
			}},
		{name: "an operator label that differs from the image's counts (positive control)",
			src: Sources{Labels: map[string]string{"baton.http-probe": "/mine"}, ImageLabels: map[string]string{"baton.http-probe": "/image"}},
			check: func(r Resolved) string {
				if r.Settings.HTTPProbe != "/mine" || len(r.Ignored) != 0 {
					return "operator label not used"
				}
				return ""
			}},
		{name: "a reload command from an operator label is refused, naming the flag",
			src:     Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf", "baton.nginx-reload": "touch /tmp/pwned"}},
			wantErr: "baton takes no command from a label; pass --nginx-reload CMD"},
		{name: "the kernel path from an operator label is refused, naming the flag: it changes the host's firewall",
			src:     Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf", "baton.kernel-path": "true"}, Flags: map[string]string{"nginx-reload": "nginx -s reload"}},
			wantErr: "baton takes no firewall rule from a label; pass --kernel-path (baton records it"},
		{name: "the kernel path from the flag (positive control)",
			src: Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf"}, Flags: map[string]string{"nginx-reload": "nginx -s reload", "kernel-path": "true"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath || r.Sticky["kernel-path"] != "true" {
					return "flag not used or not recorded"
				}
				if _, mirrored := r.Settings.Labels()["baton.kernel-path"]; mirrored {
					return "mirrored as a label, which would look like an invitation"
				}
				return ""
			}},
		{name: "the kernel path recorded by an earlier deploy's flag holds",
			src: Sources{Recorded: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload", "kernel-path": "true"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath {
					return "recorded flag not used"
				}
				return ""
			}},
		{name: "the configuration file's kernel path serves a relay for an nginx on the host",
			policy: Policy{Config: map[string]string{"kernel-path": "true"}},
			src:    Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath {
					return "configuration file's kernel path not used"
				}
				return ""
			}},
		{name: "the configuration file's kernel path serves a relay for an nginx container",
			policy: Policy{Config: map[string]string{"kernel-path": "true"}},
			src:    Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-container": "proxy"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath {
					return "configuration file's kernel path not used for an nginx container"
				}
				return ""
			}},
		{name: "the configuration file's kernel path skips an nginx container a label names",
			policy: Policy{Config: map[string]string{"kernel-path": "true"}},
			src:    Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf", "baton.nginx-container": "proxy"}},
			check: func(r Resolved) string {
				if r.Settings.KernelPath || r.Settings.NginxContainer != "proxy" {
					return "kernel path set for a label's nginx container, or the deploy lost it"
				}
				return ""
			}},
		{name: "the configuration file's kernel path serves a relay on a host address too (nginx on another machine: a forwarded route)",
			policy: Policy{Config: map[string]string{"kernel-path": "true"}},
			src:    Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload", "relay-address": "10.0.0.5"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath {
					return "kernel path not set for a relay other hosts reach"
				}
				return ""
			}},
		{name: "the configuration file's kernel path skips a service without the relay",
			policy: Policy{Config: map[string]string{"kernel-path": "true"}},
			src:    Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload", "relay": "false"}},
			check: func(r Resolved) string {
				if r.Settings.KernelPath {
					return "kernel path set without the relay"
				}
				return ""
			}},
		{name: "the configuration file's kernel path yields to the flag",
			policy: Policy{Config: map[string]string{"kernel-path": "true"}},
			src:    Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload", "kernel-path": "false"}},
			check: func(r Resolved) string {
				if r.Settings.KernelPath {
					return "flag outvoted by the configuration file"
				}
				return ""
			}},
		{name: "--kernel-path with an nginx container",
			src: Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-container": "proxy", "kernel-path": "true"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath {
					return "kernel path not set for an nginx container"
				}
				return ""
			}},
		{name: "--kernel-path with an nginx container a label names is refused",
			src:     Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf", "baton.nginx-container": "victim"}, Flags: map[string]string{"kernel-path": "true"}},
			wantErr: `label baton.nginx-container="victim": with --kernel-path baton writes a firewall rule`},
		{name: "--kernel-path with an nginx container recorded from a flag (positive control)",
			src: Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf", "baton.nginx-container": "proxy"}, Recorded: map[string]string{"nginx-container": "proxy"}, Flags: map[string]string{"kernel-path": "true"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath || r.Settings.NginxContainer != "proxy" {
					return "kernel path not set for the recorded nginx container"
				}
				return ""
			}},
		{name: "the configuration file's nginx container, mirrored on the container by baton, with the kernel path",
			policy: Policy{Config: map[string]string{"nginx-container": "proxy", "kernel-path": "true"}},
			src:    Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf", "baton.nginx-container": "proxy"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath || r.Settings.NginxContainer != "proxy" || r.Settings.nginxByLabel {
					return "baton's own label copy of the configuration file's nginx container counted as a label's choice"
				}
				return ""
			}},
		{name: "a label naming another nginx container than the configuration file's, with the kernel path, is refused",
			policy:  Policy{Config: map[string]string{"nginx-container": "proxy"}},
			src:     Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf", "baton.nginx-container": "victim"}, Flags: map[string]string{"kernel-path": "true"}},
			wantErr: `label baton.nginx-container="victim"`},
		{name: "the configuration file's kernel path with a non-loopback relay address serves an nginx container",
			policy: Policy{Config: map[string]string{"kernel-path": "true", "relay-address": "10.0.0.5"}},
			src:    Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-container": "proxy"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath {
					return "kernel path not set for an nginx container (the relay address is the host relay's)"
				}
				return ""
			}},
		{name: "an nginx container a label names, without the kernel path (positive control)",
			src: Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf", "baton.nginx-container": "proxy"}},
			check: func(r Resolved) string {
				if r.Settings.NginxContainer != "proxy" {
					return "label's nginx container not used"
				}
				return ""
			}},
		{name: "--kernel-path without the relay is refused",
			src:     Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload", "relay": "false", "kernel-path": "true"}},
			wantErr: "--kernel-path needs baton's relay (--nginx-upstream with --nginx-reload or --nginx-container"},
		{name: "--kernel-path without nginx is refused",
			src:     Sources{Flags: map[string]string{"kernel-path": "true"}},
			wantErr: "--kernel-path needs baton's relay"},
		{name: "--kernel-path with a relay on every address is refused: a DNAT catches one",
			src:     Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload", "relay-address": "0.0.0.0", "kernel-path": "true"}},
			wantErr: "--kernel-path needs the relay on one IPv4 address of the host"},
		{name: "--kernel-path with a relay on an IPv6 address is refused",
			src:     Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload", "relay-address": "fd00::5", "kernel-path": "true"}},
			wantErr: "--kernel-path needs the relay on one IPv4 address of the host"},
		{name: "--kernel-path with a relay on a host address is taken (a forwarded route)",
			src: Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload", "relay-address": "10.0.0.5", "kernel-path": "true"}},
			check: func(r Resolved) string {
				if !r.Settings.KernelPath {
					return "kernel path refused for a relay on a host address"
				}
				return ""
			}},
		{name: "a reload program given as a relative path is refused: later deploys run from another directory",
			src:     Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "./reload.sh now"}},
			wantErr: `program "./reload.sh" is a relative path`},
		{name: "a relative reload program recorded earlier is refused too",
			src:     Sources{Recorded: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "bin/reload"}},
			wantErr: `program "bin/reload" is a relative path`},
		{name: "a reload program by absolute path or by name on PATH (positive control)",
			src: Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "/usr/sbin/nginx -s reload -c ./x.conf"}},
			check: func(r Resolved) string {
				if r.Settings.NginxReload != "/usr/sbin/nginx -s reload -c ./x.conf" {
					return "absolute program refused"
				}
				return ""
			}},
		{name: "a reload command from the image is ignored, not refused",
			src: Sources{Labels: map[string]string{"baton.nginx-reload": "touch /tmp/pwned"}, ImageLabels: map[string]string{"baton.nginx-reload": "touch /tmp/pwned"}},
			check: func(r Resolved) string {
				if r.Settings.NginxReload != "" {
					return "image command used"
				}
				return ""
			}},
		{name: "a label equal to the recorded command is a mirror (migration)",
			src: Sources{Recorded: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload"},
				Labels: map[string]string{"baton.nginx-reload": "nginx -s reload"}},
			check: func(r Resolved) string {
				if r.Settings.NginxReload != "nginx -s reload" {
					return "recorded command lost"
				}
				return ""
			}},
		{name: "a flag given now outvotes an old label",
			src: Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload"},
				Labels: map[string]string{"baton.nginx-reload": "old"}},
			check: func(r Resolved) string {
				if r.Settings.NginxReload != "nginx -s reload" || r.Sticky["nginx-reload"] != "nginx -s reload" {
					return "flag not used or not recorded"
				}
				return ""
			}},
		{name: "recorded flags beat labels, flags now beat recorded",
			src: Sources{Flags: map[string]string{"drain": "1s"}, Recorded: map[string]string{"drain": "2s", "http-probe": "/rec"},
				Labels: map[string]string{"baton.drain": "3s", "baton.http-probe": "/label", "baton.warmup-requests": "4"}},
			check: func(r Resolved) string {
				s := r.Settings
				if s.Drain.String() != "1s" || s.HTTPProbe != "/rec" || s.WarmupRequests != 4 {
					return "wrong precedence: " + s.String()
				}
				if r.Sticky["drain"] != "1s" || r.Sticky["http-probe"] != "/rec" || len(r.Sticky) != 2 {
					return "sticky flags wrong"
				}
				return ""
			}},
		{name: "the configuration file's reload command serves host nginx",
			policy: Policy{Config: map[string]string{"nginx-reload": "nginx -s reload", "drain": "9s"}},
			src:    Sources{Labels: map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/web.conf"}},
			check: func(r Resolved) string {
				if r.Settings.NginxReload != "nginx -s reload" || r.Settings.Drain.String() != "9s" {
					return "config not applied"
				}
				return ""
			}},
		{name: "the configuration file's reload command stays out of a container nginx and of none mode",
			policy: Policy{Config: map[string]string{"nginx-reload": "nginx -s reload"}},
			src:    Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-container": "proxy"}},
			check: func(r Resolved) string {
				if r.Settings.NginxReload != "" {
					return "config command mixed with a container nginx"
				}
				return ""
			}},
		{name: "upstream outside the allowed directories",
			src:     Sources{Flags: map[string]string{"nginx-upstream": "/etc/passwd", "nginx-reload": "true"}},
			wantErr: "--nginx-upstream \"/etc/passwd\" is outside the directories baton may write upstream files in (/etc/nginx/baton)"},
		{name: "upstream from a label outside the allowed directories names the label",
			src:     Sources{Labels: map[string]string{"baton.nginx-upstream": "/x", "baton.nginx-container": "proxy"}},
			wantErr: "label baton.nginx-upstream \"/x\" is outside"},
		{name: "upstream with .. is refused",
			policy:  allowed,
			src:     Sources{Flags: map[string]string{"nginx-upstream": "/srv/nginx/../../etc/cron.d/x", "nginx-reload": "true"}},
			wantErr: "not a clean path"},
		{name: "upstream in an allowed directory (positive control)",
			policy: allowed,
			src:    Sources{Flags: map[string]string{"nginx-upstream": "/srv/nginx/web.conf", "nginx-reload": "true"}},
			check: func(r Resolved) string {
				if r.Settings.NginxUpstream != "/srv/nginx/web.conf" {
					return "allowed path refused"
				}
				return ""
			}},
		{name: "a path recorded from an earlier deploy's flag stays allowed",
			src: Sources{Recorded: map[string]string{"nginx-upstream": "/srv/compose/baton/web.conf", "nginx-container": "proxy"}},
			check: func(r Resolved) string {
				if r.Settings.NginxUpstream != "/srv/compose/baton/web.conf" {
					return "recorded path refused"
				}
				return ""
			}},
		{name: "the same path from a label is not",
			src:     Sources{Labels: map[string]string{"baton.nginx-upstream": "/srv/compose/baton/web.conf", "baton.nginx-container": "proxy"}},
			wantErr: "outside"},
		{name: "a directory's prefix is not the directory",
			policy:  allowed,
			src:     Sources{Flags: map[string]string{"nginx-upstream": "/srv/nginx-evil/web.conf", "nginx-reload": "true"}},
			wantErr: "outside"},
		{name: "unquoted shell operator in the reload command",
			src:     Sources{Flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/w.conf", "nginx-reload": "nginx -s reload; touch /tmp/x"}},
			wantErr: "without a shell"},
		{name: "a pre-switch step in the config file is refused, not ignored",
			policy:  Policy{Config: map[string]string{"pre-switch": "/app/migrate"}, ConfigPath: "/etc/baton/baton.conf"},
			wantErr: "pre-switch in /etc/baton/baton.conf: a pre-switch step belongs to one service"},
		{name: "a bad config value names the file",
			policy:  Policy{Config: map[string]string{"drain": "soon"}, ConfigPath: "/etc/baton/baton.conf"},
			wantErr: "drain in /etc/baton/baton.conf"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.policy.Resolve(tc.src)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("got %v, want a one-line ErrInvalid saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(res); msg != "" {
				t.Fatalf("%s: %+v", msg, res)
			}
		})
	}
}

func TestOwnLabels(t *testing.T) {
	own, ignored := OwnLabels(
		map[string]string{"baton.role": "app", "baton.service": "web", "com.docker.compose.project": "p", "org.x": "same", "baton.drain": "5s"},
		map[string]string{"baton.role": "app", "baton.service": "other", "com.docker.compose.project": "p", "org.x": "same"})
	want := map[string]string{"baton.service": "web", "org.x": "same", "baton.drain": "5s"}
	if len(own) != len(want) {
		t.Fatalf("own %v, want %v", own, want)
	}
	for k, v := range want {
		if own[k] != v {
			t.Fatalf("own %v, want %v", own, want)
		}
	}
	if !slices.Equal(ignored, []string{"baton.role=app", "com.docker.compose.project=p"}) {
		t.Fatalf("ignored %v", ignored)
	}
}

func TestServiceOfIgnoresAForeignServiceLabel(t *testing.T) {
	c := fakeInspect("evil", map[string]string{"baton.service": "web", "baton.deploy-id": "abcdef"})
	if svc := ServiceOf(c); svc.Key != "evil" {
		t.Fatalf("a container named evil labelled baton.service=web is service %q, want evil", svc.Key)
	}
	c = fakeInspect("web-baton-abcdef", map[string]string{"baton.service": "web", "baton.deploy-id": "abcdef"})
	if svc := ServiceOf(c); svc.Key != "web" || svc.Name != "web" {
		t.Fatalf("baton's replacement is service %+v, want web", svc)
	}
}

func TestSplitCommand(t *testing.T) {
	cases := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "nginx -s reload", want: []string{"nginx", "-s", "reload"}},
		{in: `  /usr/sbin/nginx   -c '/etc/my nginx.conf' -s "reload" `, want: []string{"/usr/sbin/nginx", "-c", "/etc/my nginx.conf", "-s", "reload"}},
		{in: `sh -c 'nginx -t && nginx -s reload'`, want: []string{"sh", "-c", "nginx -t && nginx -s reload"}},
		{in: `a\ b "c\"d" 'e\f' ""`, want: []string{"a b", `c"d`, `e\f`, ""}},
		{in: `echo "$HOME"`, want: []string{"echo", "$HOME"}},
		{in: "nginx -s reload && touch /x", wantErr: "without a shell"},
		{in: "echo $(id)", wantErr: "without a shell"},
		{in: "echo `id`", wantErr: "without a shell"},
		{in: `echo 'open`, wantErr: "unterminated"},
		{in: "   ", wantErr: "empty"},
	}
	for _, tc := range cases {
		got, err := SplitCommand(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("SplitCommand(%q) = %q, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCheckUpstreamFS(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(real, "file-link.conf")); err != nil {
		t.Fatal(err)
	}
	if err := CheckUpstreamFS(filepath.Join(real, "web.conf")); err != nil {
		t.Fatalf("a plain path (positive control): %v", err)
	}
	if err := CheckUpstreamFS(filepath.Join(dir, "new", "sub", "web.conf")); err != nil {
		t.Fatalf("directories baton would create: %v", err)
	}
	for _, p := range []string{filepath.Join(dir, "link", "web.conf"), filepath.Join(real, "file-link.conf")} {
		err := CheckUpstreamFS(p)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("CheckUpstreamFS(%s) = %v, want a refusal naming the symbolic link", p, err)
		}
	}
	// Directories everyone may write to: refused where they hold the file
	// or, unless sticky, anywhere above it.
	for name, mode := range map[string]os.FileMode{"open": 0o777, "sticky": 0o777 | os.ModeSticky} {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckUpstreamFS(filepath.Join(dir, "sticky", "sub", "web.conf")); err != nil {
		t.Fatalf("a root directory below a sticky world-writable one (positive control): %v", err)
	}
	for _, p := range []string{filepath.Join(dir, "open", "web.conf"), filepath.Join(dir, "sticky", "web.conf"), filepath.Join(dir, "open", "sub", "web.conf")} {
		err := CheckUpstreamFS(p)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "writable by everyone") || strings.Contains(err.Error(), "\n") {
			t.Errorf("CheckUpstreamFS(%s) = %v, want a one-line refusal naming the world-writable directory", p, err)
		}
	}
}

// FuzzResolve feeds arbitrary labels, image labels, flags and recorded flags
// to the resolution and checks its promises: no panic; an image's own label
// never shows in the settings; the reload command never comes from a label;
// an upstream file is always inside an allowed directory, clean and
// absolute; every error is one line and says ErrInvalid.
func FuzzResolve(f *testing.F) {
	f.Add("baton.nginx-reload", "touch /tmp/pwned", "baton.nginx-reload", "touch /tmp/pwned", "nginx-upstream", "/etc/nginx/baton/w.conf", "", "")
	f.Add("baton.nginx-upstream", "/x", "baton.nginx-upstream", "/x", "nginx-reload", "true", "", "")
	f.Add("baton.nginx-upstream", "/etc/nginx/baton/../../x", "", "", "nginx-container", "n", "", "")
	f.Add("baton.port", "8080", "baton.port", "8080", "http-probe", "/h", "drain", "1s")
	f.Add("baton.relay", "false", "baton.relay", "true", "", "", "nginx-reload", "nginx -s reload")
	f.Add("baton.nginx-reload", "nginx -s reload", "", "", "", "", "nginx-reload", "nginx -s reload")
	f.Add("baton.http-probe", "/a", "baton.http-probe", "/b", "port", "70000", "", "")
	f.Add("com.docker.compose.project", "p", "com.docker.compose.project", "p", "", "", "", "")
	f.Fuzz(func(t *testing.T, lk, lv, ik, iv, fk, fv, rk, rv string) {
		labels := map[string]string{lk: lv, "baton.nginx-upstream": "/etc/nginx/baton/" + lv}
		image := map[string]string{ik: iv}
		var flags, recorded map[string]string
		if fk != "" {
			flags = map[string]string{fk: fv}
		}
		if rk != "" {
			recorded = map[string]string{rk: rv}
		}
		p := Policy{UpstreamDirs: []string{"/srv/up"}}
		res, err := p.Resolve(Sources{Flags: flags, Recorded: recorded, Labels: labels, ImageLabels: image})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\n") && utf8.ValidString(lk+lv+fk+fv+rk+rv) && !strings.ContainsAny(lk+lv+fk+fv+rk+rv, "\n") {
				t.Fatalf("multi-line error: %q", msg)
			}
			return
		}
		s := res.Settings
		// The reload command only ever comes from a flag or the record.
		if s.NginxReload != "" && s.NginxReload != flags["nginx-reload"] && s.NginxReload != recorded["nginx-reload"] {
			t.Fatalf("reload command %q came from a label", s.NginxReload)
		}
		if s.NginxReload != "" {
			if _, err := SplitCommand(s.NginxReload); err != nil {
				t.Fatalf("accepted a reload command that does not split: %v", err)
			}
		}
		if u := s.NginxUpstream; u != "" {
			inside := strings.HasPrefix(u, "/etc/nginx/baton/") || strings.HasPrefix(u, "/srv/up/") || u == recorded["nginx-upstream"]
			if filepath.Clean(u) != u || !filepath.IsAbs(u) || !inside {
				t.Fatalf("upstream %q outside the allowed directories", u)
			}
		}
		// An image's label, when the container carries it unchanged, never
		// sets anything: resolving without it gives the same settings.
		if lk == ik && lv == iv && strings.HasPrefix(lk, "baton.") {
			without := map[string]string{"baton.nginx-upstream": "/etc/nginx/baton/" + lv}
			if lk == "baton.nginx-upstream" {
				without = map[string]string{}
			}
			res2, err2 := p.Resolve(Sources{Flags: flags, Recorded: recorded, Labels: without})
			if err2 == nil && res2.Settings != s {
				t.Fatalf("image label %s=%q changed the settings: %+v vs %+v", lk, lv, s, res2.Settings)
			}
		}
	})
}

func fakeInspect(name string, labels map[string]string) container.InspectResponse {
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{Name: "/" + name},
		Config:            &container.Config{Labels: labels},
	}
}

// compose labels the images it builds with project and service; its own
// containers (with their config files label) keep them, a container of an
// image that merely claims them does not.
func TestOwnLabelsComposeBuiltImage(t *testing.T) {
	built := map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "web", "com.docker.compose.version": "2.40.3"}
	ctr := map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "web", "com.docker.compose.version": "2.40.3",
		"com.docker.compose.project.config_files": "/srv/shop/compose.yml"}
	if own, _ := OwnLabels(ctr, built); own["com.docker.compose.project"] != "shop" || own["com.docker.compose.service"] != "web" {
		t.Fatalf("compose's container of a compose-built image lost its project: %v", own)
	}
	hostileImg := map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "web",
		"com.docker.compose.project.config_files": "/tmp/evil.yml"}
	if own, _ := OwnLabels(hostileImg, hostileImg); len(own) != 0 {
		t.Fatalf("an image's compose labels kept: %v", own)
	}
	if own, _ := OwnLabels(built, built); len(own) != 0 {
		t.Fatalf("docker run of a compose-built image is not compose's: %v", own)
	}
}
