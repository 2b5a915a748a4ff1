package relay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControlOps drives every op through the Client, including the errors
// a caller must be able to tell apart.
func TestControlOps(t *testing.T) {
	r := startRelay(t, Config{})
	ctx := t.Context()

	st, err := r.ctl.Status(ctx)
	if err != nil || st.Generation != 0 || st.Current != nil || st.Draining == nil || len(st.Draining) != 0 {
		t.Fatalf("status of a new relay: %+v, %v", st, err)
	}

	for _, bad := range []Target{
		{},
		{Name: "web"},
		{Name: "web", Addrs: []string{"no-port"}},
		{Name: "web", Addrs: []string{"host:"}},
	} {
		if _, err := r.ctl.Set(ctx, bad); !isCode(err, codeBadRequest) {
			t.Errorf("set %+v: %v; want a bad_request error", bad, err)
		}
	}

	web1 := Target{Name: "web-1", Addrs: []string{"127.0.0.1:1", "web-1:8080"}}
	web2 := Target{Name: "web-2", Addrs: []string{"127.0.0.1:2"}}
	st, err = r.ctl.Set(ctx, web1)
	if err != nil || st.Generation != 1 || st.Current == nil || !st.Current.Target.Equal(web1) {
		t.Fatalf("set web-1: %+v, %v", st, err)
	}
	st, err = r.ctl.Set(ctx, web1)
	if err != nil || st.Generation != 1 || len(st.Draining) != 0 {
		t.Fatalf("set web-1 again: %+v, %v; want a no-op keeping generation 1", st, err)
	}
	st, err = r.ctl.Set(ctx, web2)
	if err != nil || st.Generation != 2 || st.Current.Name != "web-2" || len(st.Draining) != 1 || !st.Draining[0].Target.Equal(web1) {
		t.Fatalf("set web-2: %+v, %v", st, err)
	}

	res, err := r.ctl.WaitDrained(ctx, "web-1", time.Second)
	if err != nil || !res.Drained || res.Generation != 2 {
		t.Fatalf("wait-drained web-1 without connections: %+v, %v", res, err)
	}
	if _, err := r.ctl.WaitDrained(ctx, "nope", time.Second); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("wait-drained unknown name: %v; want ErrUnknownTarget", err)
	}
	if _, err := r.ctl.WaitDrained(ctx, "web-2", time.Second); !errors.Is(err, ErrNotDraining) {
		t.Errorf("wait-drained current target: %v; want ErrNotDraining", err)
	}
	if _, err := r.ctl.WaitDrained(ctx, "", time.Second); !isCode(err, codeBadRequest) {
		t.Errorf("wait-drained without a name: %v; want bad_request", err)
	}
	if _, err := r.ctl.Forget(ctx, "nope"); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("forget unknown name: %v; want ErrUnknownTarget", err)
	}
	if _, err := r.ctl.Forget(ctx, "web-2"); !errors.Is(err, ErrNotDraining) {
		t.Errorf("forget current target: %v; want ErrNotDraining", err)
	}
	st, err = r.ctl.Forget(ctx, "web-1")
	if err != nil || len(st.Draining) != 0 || st.Current.Name != "web-2" {
		t.Fatalf("forget web-1: %+v, %v", st, err)
	}
	if _, err := r.ctl.Forget(ctx, "web-1"); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("forget web-1 twice: %v; want ErrUnknownTarget", err)
	}

	// A cancelled call fails with the context's error and the client
	// recovers on the next call.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.ctl.Status(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("status with a cancelled context: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := r.ctl.WaitDrained(short, "web-1", time.Minute); err == nil {
		t.Errorf("wait-drained past the caller's deadline: no error")
	}
	if st, err := r.ctl.Status(ctx); err != nil || st.Generation != 2 {
		t.Errorf("status after aborted calls: %+v, %v", st, err)
	}
}

func isCode(err error, code string) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Code == code && re.Message != ""
}

// TestControlRawProtocol speaks the wire protocol directly: malformed
// lines get an error line back and the connection stays usable.
func TestControlRawProtocol(t *testing.T) {
	r := startRelay(t, Config{})
	c, err := net.Dial("unix", r.cfg.ControlSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(c)
	ask := func(line string) map[string]any {
		t.Helper()
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := rd.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reply to %s: %v", line, err)
		}
		var m map[string]any
		if err := json.Unmarshal(resp, &m); err != nil {
			t.Fatalf("reply to %s is not JSON: %q", line, resp)
		}
		return m
	}
	for line, want := range map[string]string{
		`{"op":"reboot"}`:                  `bad request: unknown op "reboot"`,
		`{"op":`:                           "bad request: invalid json",
		`not json`:                         "bad request: invalid json",
		`{}`:                               "bad request: missing op",
		`{"op":"status","extra":1}`:        "bad request: invalid json: json: unknown field",
		`{"op":"set"}`:                     "bad request: set: missing target",
		`{"op":"wait-drained","name":"x"}`: "bad request: wait-drained: missing timeout",
		`{"op":"wait-drained","name":"x","timeout":"soon"}`: `bad request: wait-drained: invalid timeout "soon"`,
		`{"op":"wait-drained","name":"x","timeout":"1s"}`:   `wait-drained: unknown target "x"`,
		`{"op":"forget"}`:                 "bad request: forget: missing name",
		`{"op":"status"} {"op":"status"}`: "bad request: invalid json: more than one value",
	} {
		m := ask(line)
		msg, _ := m["error"].(string)
		if !strings.HasPrefix(msg, want) {
			t.Errorf("%s -> %v; want error starting %q", line, m, want)
		}
	}
	m := ask(`{"op":"set","target":{"name":"web","addrs":["10.0.0.1:80"]}}`)
	if m["generation"] != float64(1) || m["current"].(map[string]any)["name"] != "web" {
		t.Fatalf("set over the raw protocol: %v", m)
	}
	m = ask(`  {"op":"status"}  `)
	if _, ok := m["draining"].([]any); !ok || m["error"] != nil {
		t.Fatalf("status over the raw protocol: %v", m)
	}
}

// TestControlSocketFile: a stale socket file is replaced, a live relay's
// socket and a regular file are not.
func TestControlSocketFile(t *testing.T) {
	dir := socketDir(t)
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("stale socket file not left behind: %v", err)
	}
	r := startRelay(t, Config{ControlSocket: stale})
	if _, err := r.ctl.Status(t.Context()); err != nil {
		t.Fatalf("status over a socket that replaced a stale one: %v", err)
	}

	lnTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lnTCP.Close() }()
	if _, err := Start(t.Context(), Config{Listener: lnTCP, ControlSocket: stale}); err == nil || !strings.Contains(err.Error(), "another relay") {
		t.Fatalf("start on a live relay's socket: %v; want an error", err)
	}
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(t.Context(), Config{Listener: lnTCP, ControlSocket: regular}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("start on a regular file: %v; want an error", err)
	}
	if b, err := os.ReadFile(regular); err != nil || string(b) != "keep me" {
		t.Fatalf("regular file touched: %q, %v", b, err)
	}
	if _, err := Dial(t.Context(), filepath.Join(dir, "missing.sock")); err == nil {
		t.Fatal("dial of a missing socket succeeded")
	}
}
