package webhook

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/notify"
)

func TestAuthCheck(t *testing.T) {
	body := []byte(`{"image":"registry.example/shop/web:1.5"}`)
	secret, token := []byte("s3cret"), []byte("t0ken")
	good := notify.Sign(secret, body)
	a := Auth{Token: token, Secret: secret}
	cases := []struct {
		name    string
		headers map[string]string
		query   string
		auth    Auth
		want    error
	}{
		{"good signature", map[string]string{SignatureHeader: good}, "", a, nil},
		{"good signature, GitHub header", map[string]string{GitHubSignatureHeader: good}, "", a, nil},
		{"good bearer", map[string]string{"Authorization": "Bearer t0ken"}, "", a, nil},
		{"bearer scheme in any case", map[string]string{"Authorization": "bearer t0ken"}, "", a, nil},
		{"missing", nil, "", a, ErrNoCredentials},
		{"bad signature", map[string]string{SignatureHeader: notify.Sign([]byte("other"), body)}, "", a, ErrBadSignature},
		{"signature of another body", map[string]string{SignatureHeader: notify.Sign(secret, []byte("{}"))}, "", a, ErrBadSignature},
		{"wrong algorithm prefix", map[string]string{SignatureHeader: "sha1=" + strings.TrimPrefix(good, "sha256=")}, "", a, ErrBadAlgorithm},
		{"no algorithm prefix", map[string]string{SignatureHeader: strings.TrimPrefix(good, "sha256=")}, "", a, ErrBadAlgorithm},
		{"not hex", map[string]string{SignatureHeader: "sha256=zz"}, "", a, ErrBadSignature},
		{"truncated", map[string]string{SignatureHeader: good[:len(good)-2]}, "", a, ErrBadSignature},
		{"bad bearer", map[string]string{"Authorization": "Bearer t0ken2"}, "", a, ErrBadToken},
		{"bearer prefix of the token", map[string]string{"Authorization": "Bearer t0k"}, "", a, ErrBadToken},
		{"basic scheme", map[string]string{"Authorization": "Basic dDBrZW4="}, "", a, ErrBadToken},
		{"good signature but bad bearer", map[string]string{SignatureHeader: good, "Authorization": "Bearer nope"}, "", a, ErrBadToken},
		{"signature when only a token is set", map[string]string{SignatureHeader: good}, "", Auth{Token: token}, ErrBadSignature},
		{"bearer when only a secret is set", map[string]string{"Authorization": "Bearer t0ken"}, "", Auth{Secret: secret}, ErrBadToken},
		{"empty bearer when no token is set", map[string]string{"Authorization": "Bearer "}, "", Auth{Secret: secret}, ErrBadToken},
		{"query token, not enabled", nil, "token=t0ken", a, ErrNoCredentials},
		{"query token, enabled", nil, "token=t0ken", Auth{Token: token, QueryToken: true}, nil},
		{"bad query token", nil, "token=x", Auth{Token: token, QueryToken: true}, ErrBadToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/deploy/web?"+c.query, strings.NewReader(string(body)))
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			if err := c.auth.Check(r, body); !errors.Is(err, c.want) {
				t.Fatalf("Check = %v, want %v", err, c.want)
			}
		})
	}
}

// Every comparison of a presented credential with the secret goes through
// the constant-time compare, with the real values.
func TestAuthUsesConstantTimeCompare(t *testing.T) {
	orig := constantTimeEqual
	t.Cleanup(func() { constantTimeEqual = orig })
	calls := 0
	constantTimeEqual = func(a, b []byte) bool {
		calls++
		return orig(a, b)
	}
	body := []byte("{}")
	a := Auth{Token: []byte("tok"), Secret: []byte("sec")}
	for _, h := range []map[string]string{
		{"Authorization": "Bearer tok"},
		{"Authorization": "Bearer wrong"},
		{SignatureHeader: notify.Sign([]byte("sec"), body)},
		{SignatureHeader: notify.Sign([]byte("wrong"), body)},
	} {
		r := httptest.NewRequest("POST", "/v1/deploy/web", nil)
		for k, v := range h {
			r.Header.Set(k, v)
		}
		before := calls
		_ = a.Check(r, body)
		if calls != before+1 {
			t.Fatalf("%v: %d constant-time compares, want 1", h, calls-before)
		}
	}
}
