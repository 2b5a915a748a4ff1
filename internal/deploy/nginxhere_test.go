package deploy

import (
	"errors"
	"testing"
)

// TestCheckRemoteFactsSharedNginx: a remote engine with the relay and an
// nginx on a host is refused, unless that nginx is this machine's (a
// rollout's shared nginx); the exception covers nothing else.
func TestCheckRemoteFactsSharedNginx(t *testing.T) {
	hostNginx := Settings{NginxUpstream: "/etc/nginx/baton/web.conf", NginxReload: "nginx -s reload", Relay: true}
	none := Settings{HTTPProbe: "/healthz"}
	cases := []struct {
		name string
		f    Facts
		ok   bool
	}{
		{"remote, host nginx elsewhere", Facts{Remote: true, Settings: hostNginx}, false},
		{"remote, shared nginx here", Facts{Remote: true, NginxHere: true, Settings: hostNginx}, true},
		{"remote, here, but no relay to probe through", Facts{Remote: true, NginxHere: true, Settings: none}, false},
		{"local", Facts{Settings: hostNginx}, true},
	}
	for _, c := range cases {
		err := checkRemoteFacts(&c.f)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrUnsupported)) {
			t.Errorf("%s: err %v, want ok=%v", c.name, err, c.ok)
		}
	}
}
