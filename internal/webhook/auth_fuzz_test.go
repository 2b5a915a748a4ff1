package webhook

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// FuzzVerify: whatever headers, method, path and body arrive, Check never
// panics and accepts a v1 signature only when it is the HMAC of exactly this
// method, path, timestamp and body, with the timestamp inside the window,
// and only once. A request signed properly is accepted once, and the same
// signature on a request that differs in method, path or body is refused.
func FuzzVerify(f *testing.F) {
	body := []byte(`{"image":"registry.example/shop/web:1.5"}`)
	_, good := Sign(testSecret, "POST", "/v1/deploy/web", testNow, body)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	f.Add("POST", "/v1/deploy/web", ts, good, "", body, int64(0))
	f.Add("GET", "/v1/deploys/abc", ts, "v1=00", "", []byte{}, int64(-301))
	f.Add("POST", "/v1/deploy/web?x=1", "+1800000000", "sha256=", "Bearer x", body, int64(299))
	f.Add("POST", "/v1/deploy/a%2Fb", "", "v1="+string(bytes.Repeat([]byte("a"), 64)), "", []byte("\n"), int64(1<<40))
	f.Fuzz(func(t *testing.T, method, path, tsHeader, sigHeader, authz string, body []byte, skew int64) {
		u, err := url.ParseRequestURI(path)
		if err != nil || u.Opaque != "" || method == "" || !validMethod(method) {
			return
		}
		a := testAuth()
		req := func(method string, u *url.URL, ts, sig string) *http.Request {
			r := &http.Request{Method: method, URL: u, Header: http.Header{}}
			if ts != "" {
				r.Header.Set(TimestampHeader, ts)
			}
			if sig != "" {
				r.Header.Set(SignatureHeader, sig)
			}
			if authz != "" {
				r.Header.Set("Authorization", authz)
			}
			return r
		}
		// Arbitrary headers: an accepted v1 signature is the right one.
		v, err := a.Check(req(method, u, tsHeader, sigHeader), body)
		if err == nil && v.Kind == KindSigned {
			want := "v1=" + hexMAC(MAC(testSecret, method, u.RequestURI(), tsHeader, body))
			if !equalFoldASCII(sigHeader, want) {
				t.Fatalf("accepted signature %q for a request whose v1 signature is %q", sigHeader, want)
			}
			n, _ := strconv.ParseInt(tsHeader, 10, 64)
			if d := testNow.Sub(time.Unix(n, 0)); d > DefaultWindow || d < -DefaultWindow {
				t.Fatalf("accepted timestamp %q, %s off", tsHeader, d)
			}
		}

		// A properly signed request at a fuzzed skew.
		a = testAuth()
		authz = ""
		at := testNow.Add(time.Duration(skew%int64(time.Hour/time.Second)) * time.Second)
		ts, sig := Sign(testSecret, method, u.RequestURI(), at, body)
		_, err = a.Check(req(method, u, ts, sig), body)
		inWindow := testNow.Sub(at) <= DefaultWindow && testNow.Sub(at) >= -DefaultWindow
		if inWindow != (err == nil) {
			t.Fatalf("signed at %s (%s off): %v", at, testNow.Sub(at), err)
		}
		if !inWindow {
			if !errors.Is(err, ErrStale) {
				t.Fatalf("outside the window: %v, want ErrStale", err)
			}
			return
		}
		if _, err := a.Check(req(method, u, ts, sig), body); !errors.Is(err, ErrReplayed) {
			t.Fatalf("the same signature twice: %v, want ErrReplayed", err)
		}
		other := "POST"
		if method == "POST" {
			other = "GET"
		}
		if _, err := testAuth().Check(req(other, u, ts, sig), body); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("another method: %v", err)
		}
		u2 := *u
		u2.Path += "x"
		u2.RawPath = ""
		if _, err := testAuth().Check(req(method, &u2, ts, sig), body); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("another path %q: %v", u2.RequestURI(), err)
		}
		if _, err := testAuth().Check(req(method, u, ts, sig), append(append([]byte(nil), body...), ' ')); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("another body: %v", err)
		}
	})
}

func validMethod(m string) bool {
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || c == '\n' {
			return false
		}
	}
	return true
}

func hexMAC(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func equalFoldASCII(a, b string) bool {
	return bytes.EqualFold([]byte(a), []byte(b))
}
