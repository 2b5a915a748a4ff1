package deploy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestResolveSettings(t *testing.T) {
	cases := []struct {
		name    string
		flags   map[string]string
		labels  map[string]string
		check   func(Settings) bool
		wantErr string
	}{
		{name: "defaults", check: func(s Settings) bool {
			return s.HealthTimeout == time.Minute && s.Drain == 30*time.Second && s.StopTimeout == -1 && s.Relay && s.TrafficMode() == "none"
		}},
		{name: "label applies", labels: map[string]string{"baton.http-probe": "/up", "baton.drain": "5s"}, check: func(s Settings) bool {
			return s.HTTPProbe == "/up" && s.Drain == 5*time.Second
		}},
		{name: "flag beats label", flags: map[string]string{"http-probe": "/flag"}, labels: map[string]string{"baton.http-probe": "/label"}, check: func(s Settings) bool {
			return s.HTTPProbe == "/flag"
		}},
		{name: "relay mode", flags: map[string]string{"nginx-upstream": "/etc/nginx/baton/web.conf", "nginx-reload": "nginx -s reload"}, check: func(s Settings) bool {
			return s.TrafficMode() == "relay"
		}},
		{name: "reload mode", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "nginx", "relay": "false"}, check: func(s Settings) bool {
			return s.TrafficMode() == "nginx"
		}},
		{name: "stop timeout rounds up to seconds", flags: map[string]string{"stop-timeout": "1500ms"}, check: func(s Settings) bool { return s.StopTimeout == 2 }},
		{name: "bad label names the label", labels: map[string]string{"baton.drain": "soon"}, wantErr: "label baton.drain"},
		{name: "bad flag names the flag", flags: map[string]string{"health-timeout": "0s"}, wantErr: "--health-timeout"},
		{name: "probe needs a path", flags: map[string]string{"http-probe": "healthz"}, wantErr: "starting with /"},
		{name: "upstream needs a reload", flags: map[string]string{"nginx-upstream": "/u.conf"}, wantErr: "--nginx-reload CMD"},
		{name: "reload needs an upstream", flags: map[string]string{"nginx-reload": "x"}, wantErr: "need --nginx-upstream"},
		{name: "host or container, not both", flags: map[string]string{"nginx-upstream": "/u", "nginx-reload": "x", "nginx-container": "n"}, wantErr: "pick one"},
		{name: "upstream path absolute", flags: map[string]string{"nginx-upstream": "u.conf", "nginx-reload": "x"}, wantErr: "absolute path"},
		{name: "port range", flags: map[string]string{"port": "70000"}, wantErr: "not a port"},
		{name: "bake with the relay", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-reload": "x", "bake": "30s", "bake-max-dial-errors": "5"}, check: func(s Settings) bool {
			return s.Bake == 30*time.Second && s.BakeMaxDialErrors == 5 && s.String() == "bake=30s bake-max-dial-errors=5 nginx-reload=x nginx-upstream=/u.conf"
		}},
		{name: "bake in reload mode", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "n", "relay": "false", "bake": "1m"}, check: func(s Settings) bool {
			return s.Bake == time.Minute && s.TrafficMode() == TrafficNginx
		}},
		{name: "bake label", labels: map[string]string{"baton.bake": "10s", "baton.nginx-upstream": "/u.conf", "baton.nginx-container": "n"}, check: func(s Settings) bool { return s.Bake == 10*time.Second }},
		{name: "bake needs moving traffic", flags: map[string]string{"bake": "30s"}, wantErr: "--bake needs traffic baton moves"},
		{name: "bake duration", flags: map[string]string{"bake": "a while"}, wantErr: "--bake"},
		{name: "canary timed", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-reload": "x", "canary": "20:5m"}, check: func(s Settings) bool {
			return s.Canary == Canary{Percent: 20, Duration: 5 * time.Minute} && s.Canary.String() == "20:5m0s"
		}},
		{name: "canary manual, percent sign", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-reload": "x", "canary": "5%"}, check: func(s Settings) bool {
			return s.Canary == Canary{Percent: 5}
		}},
		{name: "canary 0 is off", flags: map[string]string{"canary": "0"}, labels: map[string]string{"baton.canary": "20"}, check: func(s Settings) bool { return s.Canary == Canary{} }},
		{name: "canary needs the relay", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "n", "relay": "false", "canary": "20"}, wantErr: "--canary needs baton's relay"},
		{name: "canary without traffic", flags: map[string]string{"canary": "20"}, wantErr: "--canary needs baton's relay"},
		{name: "canary 100 is a switch", flags: map[string]string{"canary": "100"}, wantErr: "1 to 99 percent"},
		{name: "canary bad duration", flags: map[string]string{"canary": "20:soon"}, wantErr: "duration \"soon\""},
		{name: "resets with the relay", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-reload": "x", "bake": "30s", "bake-max-resets": "2"}, check: func(s Settings) bool {
			return s.BakeMaxResets == 2 && s.Labels()["baton.bake-max-resets"] == "2"
		}},
		{name: "resets need the relay", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "n", "relay": "false", "bake": "1m", "bake-max-resets": "3"}, wantErr: "--bake-max-resets needs baton's relay"},
		{name: "bake with a stopping drain signal", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "n", "bake": "1m", "drain-signal": "TERM"}, wantErr: "--drain-signal SIGTERM usually stops"},
		{name: "canary with a stopping drain signal", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "n", "canary": "20", "drain-signal": "SIGQUIT"}, wantErr: "--drain-signal SIGQUIT usually stops"},
		{name: "bake with a drain signal the app answers", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "n", "bake": "1m", "drain-signal": "USR1"}, check: func(s Settings) bool {
			return s.Bake == time.Minute && s.DrainSignal == "SIGUSR1"
		}},
		{name: "a stopping drain signal without a bake", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "n", "drain-signal": "TERM"}, check: func(s Settings) bool { return s.DrainSignal == "SIGTERM" }},
		{name: "dial errors need the relay", flags: map[string]string{"nginx-upstream": "/u.conf", "nginx-container": "n", "relay": "false", "bake": "1m", "bake-max-dial-errors": "3"}, wantErr: "--bake-max-dial-errors needs baton's relay"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := resolveAnywhere(tc.flags, tc.labels)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %v, want an ErrInvalid saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(s) {
				t.Fatalf("settings %+v", s)
			}
		})
	}
}

// Settings written as labels read back the same: the next deploy, a
// rollback or the watcher behaves like the deploy that wrote them.
func TestSettingsLabelsRoundTrip(t *testing.T) {
	s, err := resolveAnywhere(map[string]string{
		"port": "8080", "http-probe": "/healthz", "tcp-probe": "true", "health-timeout": "90s",
		"warmup-requests": "3", "drain": "10s", "stop-timeout": "20s", "nginx-upstream": "/etc/nginx/baton/web.conf",
		"nginx-container": "proxy", "relay": "false", "relay-port": "18080", "relay-address": "10.0.0.5",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := resolveAnywhere(nil, s.Labels())
	if err != nil {
		t.Fatal(err)
	}
	if !back.nginxByLabel {
		t.Fatalf("an nginx container read back from labels alone is not marked as a label's")
	}
	back.nginxByLabel = false // where the name came from, not a setting
	if back != s {
		t.Fatalf("round trip changed settings:\n%+v\n%+v", s, back)
	}
	if len(DefaultSettings().Labels()) != 0 {
		t.Fatalf("defaults produce labels: %v", DefaultSettings().Labels())
	}
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{ErrInvalid, 2},
		{ErrNotFound, 2},
		{ErrNotRunning, 2},
		{ErrUnsupported, 2},
		{&PhaseError{Phase: PhaseWarm, OldServing: true, Err: errors.New("unhealthy")}, 1},
		{&PhaseError{Phase: PhaseHandover, OldServing: false, Err: errors.New("x")}, 3},
		{&PhaseError{Phase: PhaseHandover, OldServing: false, Err: ErrOldStopped}, 3},
		{errors.New("docker daemon gone"), 1},
	}
	for _, tc := range cases {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// resolveAnywhere resolves with every upstream directory allowed, for the
// cases about other settings.
func resolveAnywhere(flags, labels map[string]string) (Settings, error) {
	res, err := Policy{UpstreamDirs: []string{"/"}}.Resolve(Sources{Flags: flags, Labels: labels})
	return res.Settings, err
}
