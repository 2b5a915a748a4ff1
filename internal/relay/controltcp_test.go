package relay

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// The TCP control listener answers only requests that carry the token.
func TestControlTCPNeedsToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const token = "0123456789abcdef0123456789abcdef"
	tr := startRelay(t, Config{ControlTCP: addr, ControlToken: token})
	backend := startHTTPBackend(t, "A")

	good, err := DialTCP(t.Context(), addr, token)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Set(t.Context(), Target{Name: "A", Addrs: []string{backend.addr}}); err != nil {
		t.Fatalf("set with the token: %v", err)
	}
	if st := tr.status(t); st.Current == nil || st.Current.Name != "A" {
		t.Fatalf("status after set over TCP: %+v", st)
	}
	for _, bad := range []string{"", "wrong-token-wrong-token-wrong-tok"} {
		c, err := DialTCP(t.Context(), addr, bad)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Set(t.Context(), Target{Name: "evil", Addrs: []string{"127.0.0.1:1"}})
		c.Close()
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != codeUnauthorized || !strings.Contains(err.Error(), "unauthorized") {
			t.Fatalf("token %q: got %v, want unauthorized", bad, err)
		}
	}
	if st := tr.status(t); st.Current.Name != "A" {
		t.Fatalf("an unauthorized set changed the target: %+v", st)
	}
	if _, err := Start(t.Context(), Config{Listen: "127.0.0.1:0", ControlSocket: t.TempDir() + "/x.sock", ControlTCP: "127.0.0.1:0", ControlToken: "short"}); err == nil {
		t.Fatal("a short token was accepted")
	}
}
