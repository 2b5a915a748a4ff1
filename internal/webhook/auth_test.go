package webhook

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/notify"
)

var (
	testSecret = []byte("s3cret-s3cret-s3cret")
	testToken  = []byte("t0ken-t0ken-t0ken-t0ken")
	testNow    = time.Unix(1_800_000_000, 0)
)

func testAuth() *Auth {
	return &Auth{Token: testToken, Secret: testSecret, Now: func() time.Time { return testNow }, Replay: NewReplayCache(0)}
}

// signedHeaders signs method, path and body at t under secret.
func signedHeaders(secret []byte, method, path string, t time.Time, body string) map[string]string {
	ts, sig := Sign(secret, method, path, t, []byte(body))
	return map[string]string{TimestampHeader: ts, SignatureHeader: sig}
}

func TestAuthCheck(t *testing.T) {
	body := `{"image":"registry.example/shop/web:1.5"}`
	good := signedHeaders(testSecret, "POST", "/v1/deploy/web", testNow, body)
	bodyOnly := notify.Sign(testSecret, []byte(body))
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for a, b := range m {
			out[a] = b
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		auth    *Auth
		want    error
		kind    Kind
	}{
		{"v1 signature", "POST", "/v1/deploy/web", good, testAuth(), nil, KindSigned},
		{"v1, 4m59s old", "POST", "/v1/deploy/web", signedHeaders(testSecret, "POST", "/v1/deploy/web", testNow.Add(-DefaultWindow+time.Second), body), testAuth(), nil, KindSigned},
		{"v1, 4m59s ahead", "POST", "/v1/deploy/web", signedHeaders(testSecret, "POST", "/v1/deploy/web", testNow.Add(DefaultWindow-time.Second), body), testAuth(), nil, KindSigned},
		{"v1, 5m01s old", "POST", "/v1/deploy/web", signedHeaders(testSecret, "POST", "/v1/deploy/web", testNow.Add(-DefaultWindow-time.Second), body), testAuth(), ErrStale, KindNone},
		{"v1, 5m01s ahead", "POST", "/v1/deploy/web", signedHeaders(testSecret, "POST", "/v1/deploy/web", testNow.Add(DefaultWindow+time.Second), body), testAuth(), ErrStale, KindNone},
		{"v1 replayed on another target", "POST", "/v1/deploy/api", good, testAuth(), ErrBadSignature, KindNone},
		{"v1 replayed with another method", "GET", "/v1/deploy/web", good, testAuth(), ErrBadSignature, KindNone},
		{"v1 with a query added", "POST", "/v1/deploy/web?x=1", good, testAuth(), ErrBadSignature, KindNone},
		{"v1 with another timestamp", "POST", "/v1/deploy/web", with(good, TimestampHeader, "1800000001"), testAuth(), ErrBadSignature, KindNone},
		{"v1 without timestamp", "POST", "/v1/deploy/web", with(good, TimestampHeader, ""), testAuth(), ErrNoTimestamp, KindNone},
		{"v1 with a signed timestamp", "POST", "/v1/deploy/web", with(good, TimestampHeader, "+1800000000"), testAuth(), ErrNoTimestamp, KindNone},
		{"v1 with another secret", "POST", "/v1/deploy/web", signedHeaders([]byte("another-secret-of-16"), "POST", "/v1/deploy/web", testNow, body), testAuth(), ErrBadSignature, KindNone},
		{"v1 when only a token is set", "POST", "/v1/deploy/web", good, &Auth{Token: testToken, Replay: NewReplayCache(0)}, ErrBadSignature, KindNone},
		{"v1 in the GitHub header", "POST", "/v1/deploy/web", map[string]string{TimestampHeader: good[TimestampHeader], GitHubSignatureHeader: good[SignatureHeader]}, testAuth(), ErrBadAlgorithm, KindNone},
		{"v1 not hex", "POST", "/v1/deploy/web", with(good, SignatureHeader, "v1=zz"), testAuth(), ErrBadSignature, KindNone},
		{"v1 truncated", "POST", "/v1/deploy/web", with(good, SignatureHeader, good[SignatureHeader][:20]), testAuth(), ErrBadSignature, KindNone},
		{"body-only signature", "POST", "/v1/deploy/web", map[string]string{SignatureHeader: bodyOnly}, testAuth(), nil, KindBodySigned},
		{"body-only, GitHub header", "POST", "/v1/deploy/web", map[string]string{GitHubSignatureHeader: bodyOnly}, testAuth(), nil, KindBodySigned},
		{"body-only of another body", "POST", "/v1/deploy/web", map[string]string{SignatureHeader: notify.Sign(testSecret, []byte("{}"))}, testAuth(), ErrBadSignature, KindNone},
		{"sha1 prefix", "POST", "/v1/deploy/web", map[string]string{SignatureHeader: "sha1=" + strings.TrimPrefix(bodyOnly, "sha256=")}, testAuth(), ErrBadAlgorithm, KindNone},
		{"no prefix", "POST", "/v1/deploy/web", map[string]string{SignatureHeader: strings.TrimPrefix(bodyOnly, "sha256=")}, testAuth(), ErrBadAlgorithm, KindNone},
		{"bearer", "POST", "/v1/deploy/web", map[string]string{"Authorization": "Bearer " + string(testToken)}, testAuth(), nil, KindToken},
		{"bearer scheme in any case", "POST", "/v1/deploy/web", map[string]string{"Authorization": "bearer " + string(testToken)}, testAuth(), nil, KindToken},
		{"bad bearer", "POST", "/v1/deploy/web", map[string]string{"Authorization": "Bearer " + string(testToken) + "x"}, testAuth(), ErrBadToken, KindNone},
		{"bearer prefix of the token", "POST", "/v1/deploy/web", map[string]string{"Authorization": "Bearer t0k"}, testAuth(), ErrBadToken, KindNone},
		{"basic scheme", "POST", "/v1/deploy/web", map[string]string{"Authorization": "Basic dDBrZW4="}, testAuth(), ErrBadToken, KindNone},
		{"good v1 but bad bearer", "POST", "/v1/deploy/web", with(good, "Authorization", "Bearer nope"), testAuth(), ErrBadToken, KindNone},
		{"bearer and v1: the signature is the kind", "POST", "/v1/deploy/web", with(good, "Authorization", "Bearer "+string(testToken)), testAuth(), nil, KindSigned},
		{"bearer when only a secret is set", "POST", "/v1/deploy/web", map[string]string{"Authorization": "Bearer " + string(testToken)}, &Auth{Secret: testSecret, Replay: NewReplayCache(0)}, ErrBadToken, KindNone},
		{"missing", "POST", "/v1/deploy/web", nil, testAuth(), ErrNoCredentials, KindNone},
		{"query token, not enabled", "POST", "/v1/deploy/web?token=" + string(testToken), nil, testAuth(), ErrNoCredentials, KindNone},
		{"query token, enabled", "POST", "/v1/deploy/web?token=" + string(testToken), nil, &Auth{Token: testToken, QueryToken: true}, nil, KindToken},
		{"bad query token", "POST", "/v1/deploy/web?token=x", nil, &Auth{Token: testToken, QueryToken: true}, ErrBadToken, KindNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.path, strings.NewReader(body))
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			v, err := c.auth.Check(r, []byte(body))
			if !errors.Is(err, c.want) || v.Kind != c.kind {
				t.Fatalf("Check = %v, %v; want %v, %v", v.Kind, err, c.kind, c.want)
			}
		})
	}
}

// A v1 signature is accepted once within its window; a fresh signature of
// the same request (a new timestamp) is accepted.
func TestAuthReplay(t *testing.T) {
	a := testAuth()
	body := `{"tag":"1.5"}`
	check := func(h map[string]string) error {
		r := httptest.NewRequest("POST", "/v1/deploy/web", strings.NewReader(body))
		for k, v := range h {
			r.Header.Set(k, v)
		}
		_, err := a.Check(r, []byte(body))
		return err
	}
	first := signedHeaders(testSecret, "POST", "/v1/deploy/web", testNow, body)
	if err := check(first); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := check(first); !errors.Is(err, ErrReplayed) {
		t.Fatalf("second use: %v, want ErrReplayed", err)
	}
	// Upper-case hex is the same signature.
	upper := map[string]string{TimestampHeader: first[TimestampHeader], SignatureHeader: "v1=" + strings.ToUpper(strings.TrimPrefix(first[SignatureHeader], "v1="))}
	if err := check(upper); !errors.Is(err, ErrReplayed) {
		t.Fatalf("same signature in upper case: %v, want ErrReplayed", err)
	}
	if err := check(signedHeaders(testSecret, "POST", "/v1/deploy/web", testNow.Add(-time.Second), body)); err != nil {
		t.Fatalf("the same request signed anew: %v", err)
	}
	// After the window the cache may forget it: the timestamp refuses it.
	a.Now = func() time.Time { return testNow.Add(DefaultWindow + time.Second) }
	if err := check(first); !errors.Is(err, ErrStale) {
		t.Fatalf("after the window: %v, want ErrStale", err)
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c := NewReplayCache(3)
	now := testNow
	for i, k := range []string{"a", "b", "c"} {
		if err := c.Add(k, now.Add(time.Duration(i+1)*time.Minute), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Add("d", now.Add(time.Minute), now); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("full cache: %v, want ErrReplayCacheFull", err)
	}
	if err := c.Add("a", now.Add(time.Minute), now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("known key: %v, want ErrReplayed", err)
	}
	// a expires: room for d, and a is new again.
	later := now.Add(time.Minute + time.Nanosecond)
	if err := c.Add("d", later.Add(time.Minute), later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if c.Len() != 3 {
		t.Fatalf("len %d, want 3", c.Len())
	}
	var nilCache *ReplayCache
	if err := nilCache.Add("x", later, now); err == nil {
		t.Fatal("a missing replay cache accepted a signature")
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
	a := testAuth()
	for i, h := range []map[string]string{
		{"Authorization": "Bearer " + string(testToken)},
		{"Authorization": "Bearer wrong"},
		{SignatureHeader: notify.Sign(testSecret, body)},
		{SignatureHeader: notify.Sign([]byte("wrong"), body)},
		signedHeaders(testSecret, "POST", "/v1/deploy/web", testNow, string(body)),
		signedHeaders([]byte("wrong"), "POST", "/v1/deploy/web", testNow, string(body)),
	} {
		r := httptest.NewRequest("POST", "/v1/deploy/web", nil)
		for k, v := range h {
			r.Header.Set(k, v)
		}
		before := calls
		_, _ = a.Check(r, body)
		if calls != before+1 {
			t.Fatalf("case %d %v: %d constant-time compares, want 1", i, h, calls-before)
		}
	}
}

// The documented signing string, byte for byte (docs/unattended.md).
func TestSigningString(t *testing.T) {
	got := string(SigningString("POST", "/v1/deploy/web", "1800000000", []byte(`{"tag":"1.5"}`)))
	want := "POST\n/v1/deploy/web\n1800000000\n{\"tag\":\"1.5\"}"
	if got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
