// Package webhook is baton serve's HTTP endpoint: authenticated deploy
// requests from CI pipelines, Docker Hub and registry notifications.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of a signed request. X-Hub-Signature-256 is GitHub's name for a
// body-only HMAC, which baton accepts only on registry notifications.
const (
	SignatureHeader       = "X-Baton-Signature"
	TimestampHeader       = "X-Baton-Timestamp"
	GitHubSignatureHeader = "X-Hub-Signature-256"
)

// DefaultWindow is how far a signed request's timestamp may be from baton's
// clock, either way. A signature is remembered for as long as it could be
// accepted, so it is accepted once.
const DefaultWindow = 5 * time.Minute

// MinSecretLen is the shortest token or secret baton serve accepts: shorter
// ones can be guessed offline from one captured signature.
const MinSecretLen = 16

// Errors of Auth.Check; all of them answer 401 except ErrReplayCacheFull (503).
var (
	ErrNoCredentials = errors.New("no credentials: send Authorization: Bearer TOKEN, or sign the request (" + TimestampHeader + " and " + SignatureHeader + ": v1=HMAC, see docs/unattended.md)")
	ErrBadToken      = errors.New("wrong bearer token")
	ErrBadSignature  = errors.New("signature does not match the request (v1 signs METHOD\\nPATH\\nTIMESTAMP\\nBODY with HMAC-SHA256)")
	ErrBadAlgorithm  = errors.New(SignatureHeader + " must be v1=<hex HMAC-SHA256 of METHOD\\nPATH\\nTIMESTAMP\\nBODY>")
	ErrNoTimestamp   = errors.New("a v1 signature needs " + TimestampHeader + ": the request's time in Unix seconds")
	ErrStale         = errors.New(TimestampHeader + " is too far from baton's clock (a replay, or a clock that is off: sign with the current time)")
	ErrReplayed      = errors.New("this signature was already used: sign each request anew (a new " + TimestampHeader + ")")
	// ErrBodyOnly refuses a body-only HMAC (sha256=, the scheme before v1)
	// where it would authorise more than a registry notification: it does not
	// bind the method, the target or the time, so it can be replayed.
	ErrBodyOnly = errors.New("a body-only signature (sha256=) is accepted only on registry notifications; sign the method, path, " + TimestampHeader + " and body instead (" + SignatureHeader + ": v1=..., see docs/unattended.md)")
	// ErrReplayCacheFull: more distinct signed requests within the window
	// than baton remembers; refusing is safer than forgetting one.
	ErrReplayCacheFull = errors.New("too many signed requests within the replay window; try again later")
)

// constantTimeEqual compares secrets in time independent of where they
// differ. Every secret comparison goes through it (tests check that).
var constantTimeEqual = func(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Kind is the credential that authenticated a request, strongest first.
type Kind int

// Credential kinds.
const (
	KindNone Kind = iota
	// KindSigned: a v1 signature over method, path, timestamp and body,
	// inside the window and not seen before.
	KindSigned
	// KindToken: the bearer token (header, or ?token= with QueryToken).
	KindToken
	// KindBodySigned: only the body is signed (sha256=). The caller must
	// limit it to registry notifications and dedupe it with BodyReplayKey.
	KindBodySigned
)

// Auth checks a request's credentials: a v1 signature, a bearer token, a
// body-only HMAC (registry notifications only), or (only when QueryToken is
// set, for senders such as Docker Hub that cannot set headers) ?token=TOKEN.
type Auth struct {
	Token      []byte
	Secret     []byte
	QueryToken bool
	Window     time.Duration    // default DefaultWindow
	Now        func() time.Time // default time.Now
	// Replay remembers accepted v1 signatures; required when Secret is set.
	Replay *ReplayCache
}

// Configured reports whether any credential is set up.
func (a *Auth) Configured() bool { return len(a.Token) > 0 || len(a.Secret) > 0 }

func (a *Auth) window() time.Duration {
	if a.Window > 0 {
		return a.Window
	}
	return DefaultWindow
}

func (a *Auth) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Verified says how a request was authenticated.
type Verified struct {
	Kind Kind
	// bodySig is the body-only signature (KindBodySigned), for BodyReplayKey.
	bodySig string
}

// BodyReplayKey is the replay-cache key of a body-only signed request to
// target. A registry sends the same notification body to one endpoint per
// target, so the key includes the target.
func (v Verified) BodyReplayKey(target string) string {
	return "body\x00" + target + "\x00" + v.bodySig
}

// Check authenticates r, whose body is body. Every credential presented
// must be valid, and at least one must be. A valid v1 signature is recorded
// in the replay cache: the same signature is refused from then on.
func (a *Auth) Check(r *http.Request, body []byte) (Verified, error) {
	v := Verified{}
	better := func(k Kind) {
		if v.Kind == KindNone || k < v.Kind {
			v.Kind = k
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || len(a.Token) == 0 || !a.tokenOK(strings.TrimSpace(tok)) {
			return Verified{}, ErrBadToken
		}
		better(KindToken)
	}
	if a.QueryToken {
		if tok := r.URL.Query().Get("token"); tok != "" {
			if len(a.Token) == 0 || !a.tokenOK(tok) {
				return Verified{}, ErrBadToken
			}
			better(KindToken)
		}
	}
	var v1 []byte
	for _, name := range []string{SignatureHeader, GitHubSignatureHeader} {
		sig := strings.TrimSpace(r.Header.Get(name))
		if sig == "" {
			continue
		}
		algo, hexSig, ok := strings.Cut(sig, "=")
		switch {
		case ok && algo == "v1" && name == SignatureHeader:
			mac, err := a.verifyV1(r, hexSig, body)
			if err != nil {
				return Verified{}, err
			}
			v1 = mac
			better(KindSigned)
		case ok && algo == "sha256":
			if err := a.verifyBody(hexSig, body); err != nil {
				return Verified{}, err
			}
			v.bodySig = strings.ToLower(hexSig)
			better(KindBodySigned)
		default:
			return Verified{}, ErrBadAlgorithm
		}
	}
	if v.Kind == KindNone {
		return Verified{}, ErrNoCredentials
	}
	// Only a signature that verified is remembered, so filling the cache
	// takes the secret.
	if v1 != nil {
		ts, _ := parseTimestamp(r.Header.Get(TimestampHeader))
		if err := a.Replay.Add("v1\x00"+hex.EncodeToString(v1), time.Unix(ts, 0).Add(a.window()), a.now()); err != nil {
			return Verified{}, err
		}
	}
	return v, nil
}

// tokenOK compares hashes so the comparison's time does not depend on the
// token's length either.
func (a *Auth) tokenOK(tok string) bool {
	got := sha256.Sum256([]byte(tok))
	want := sha256.Sum256(a.Token)
	return constantTimeEqual(got[:], want[:])
}

func decodeMAC(hexSig string) ([]byte, error) {
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return nil, ErrBadSignature
	}
	return got, nil
}

// verifyV1 checks a v1 signature and its timestamp; it returns the MAC.
func (a *Auth) verifyV1(r *http.Request, hexSig string, body []byte) ([]byte, error) {
	if len(a.Secret) == 0 {
		return nil, ErrBadSignature
	}
	got, err := decodeMAC(hexSig)
	if err != nil {
		return nil, err
	}
	tsHeader := r.Header.Get(TimestampHeader)
	ts, err := parseTimestamp(tsHeader)
	if err != nil {
		return nil, err
	}
	if !constantTimeEqual(got, MAC(a.Secret, r.Method, r.URL.RequestURI(), tsHeader, body)) {
		return nil, ErrBadSignature
	}
	// The time is checked after the MAC, so an error names a stale request
	// only to a sender that holds the secret.
	if d := a.now().Sub(time.Unix(ts, 0)); d > a.window() || d < -a.window() {
		return nil, fmt.Errorf("%w: %s is %s off, more than %s", ErrStale, TimestampHeader, d.Round(time.Second), a.window())
	}
	return got, nil
}

func (a *Auth) verifyBody(hexSig string, body []byte) error {
	if len(a.Secret) == 0 {
		return ErrBadSignature
	}
	got, err := decodeMAC(hexSig)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, a.Secret)
	mac.Write(body)
	if !constantTimeEqual(got, mac.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}

// parseTimestamp reads Unix seconds: digits only, no sign or spaces, so one
// request has exactly one signed form.
func parseTimestamp(s string) (int64, error) {
	if s == "" {
		return 0, ErrNoTimestamp
	}
	if len(s) > 12 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w (got %q)", ErrNoTimestamp, s)
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w (got %q)", ErrNoTimestamp, s)
	}
	return ts, nil
}

// SigningString is what a v1 signature covers: the method, the request's
// path (and query, if any) exactly as sent, the X-Baton-Timestamp value and
// the raw body, joined by newlines. None of the first three can hold a
// newline, so the string is unambiguous.
func SigningString(method, path, timestamp string, body []byte) []byte {
	b := make([]byte, 0, len(method)+len(path)+len(timestamp)+3+len(body))
	b = append(b, method...)
	b = append(b, '\n')
	b = append(b, path...)
	b = append(b, '\n')
	b = append(b, timestamp...)
	b = append(b, '\n')
	return append(b, body...)
}

// MAC is the v1 HMAC-SHA256 of a request.
func MAC(secret []byte, method, path, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(SigningString(method, path, timestamp, body))
	return m.Sum(nil)
}

// Sign returns the two headers of a v1-signed request made at t:
// X-Baton-Timestamp and X-Baton-Signature.
func Sign(secret []byte, method, path string, t time.Time, body []byte) (timestamp, signature string) {
	timestamp = strconv.FormatInt(t.Unix(), 10)
	return timestamp, "v1=" + hex.EncodeToString(MAC(secret, method, path, timestamp, body))
}
