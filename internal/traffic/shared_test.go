package traffic

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/deploy"
)

// TestSharedUpstreamRefusesOneHost: a single-host deploy of a service whose
// upstream file a rollout across hosts wrote is bad input before any change
// (it would drop the other hosts' relays); a rollout's own deploy of it, and
// a single-host deploy of a file of its own, go ahead.
func TestSharedUpstreamRefusesOneHost(t *testing.T) {
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared.conf")
	own := filepath.Join(dir, "own.conf")
	if err := os.WriteFile(shared, upstreamContent([]string{"10.230.1.1:8080", "10.230.2.1:8080"}, true), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(own, upstreamContent([]string{"127.0.0.1:8080"}, false), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := deploy.Service{Key: "web", Name: "web"}
	relay := func(file string) deploy.Settings { return deploy.Settings{NginxUpstream: file, Relay: true} }
	ctx := context.Background()

	_, err := (&Factory{}).New(ctx, svc, relay(shared))
	if !errors.Is(err, deploy.ErrInvalid) || deploy.ExitCode(err) != 2 || !strings.Contains(err.Error(), "--hosts") || strings.Contains(err.Error(), "\n") {
		t.Errorf("one host, shared file: %v; want one line of bad input naming --hosts", err)
	}
	// Controls.
	rollout := &Factory{SharedUpstream: func(own []string) []string { return own }}
	if _, err := rollout.New(ctx, svc, relay(shared)); err != nil {
		t.Errorf("a rollout's deploy of the shared file: %v", err)
	}
	if _, err := (&Factory{}).New(ctx, svc, relay(own)); err != nil {
		t.Errorf("one host, its own file: %v", err)
	}
	if _, err := (&Factory{}).New(ctx, svc, relay(filepath.Join(dir, "new.conf"))); err != nil {
		t.Errorf("one host, no file yet: %v", err)
	}
	// Without the relay (--relay=false, or baton.relay=false on the
	// container) the file would list this host's container only: refused
	// on one host as with the relay, and in a rollout too.
	direct := func(file string) deploy.Settings { return deploy.Settings{NginxUpstream: file, NginxReload: "true"} }
	_, err = (&Factory{}).New(ctx, svc, direct(shared))
	if !errors.Is(err, deploy.ErrInvalid) || deploy.ExitCode(err) != 2 || !strings.Contains(err.Error(), "--hosts") || strings.Contains(err.Error(), "\n") {
		t.Errorf("one host, relay off, shared file: %v; want one line of bad input naming --hosts", err)
	}
	_, err = rollout.New(ctx, svc, direct(filepath.Join(dir, "new.conf")))
	if !errors.Is(err, deploy.ErrInvalid) || deploy.ExitCode(err) != 2 || !strings.Contains(err.Error(), "relay") {
		t.Errorf("a rollout with the relay off: %v; want bad input naming the relay", err)
	}
	// Controls: without the relay, a file of its own or no file yet.
	if tr, err := (&Factory{}).New(ctx, svc, direct(own)); err != nil {
		t.Errorf("one host, relay off, its own file: %v", err)
	} else if _, ok := tr.(*Nginx); !ok {
		t.Errorf("relay off: got %T, want *Nginx", tr)
	}
	if _, err := (&Factory{}).New(ctx, svc, direct(filepath.Join(dir, "new.conf"))); err != nil {
		t.Errorf("one host, relay off, no file yet: %v", err)
	}
	if !strings.HasPrefix(string(upstreamContent(nil, true)), sharedHeader) || strings.HasPrefix(string(upstreamContent(nil, false)), sharedHeader) {
		t.Error("only a rollout's file carries the shared header")
	}
}
