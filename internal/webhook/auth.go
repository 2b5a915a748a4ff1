// Package webhook is baton serve's HTTP endpoint: authenticated deploy
// requests from CI pipelines, Docker Hub and registry notifications.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
)

// Signature headers: baton's own, and GitHub's name for the same scheme.
const (
	SignatureHeader       = "X-Baton-Signature"
	GitHubSignatureHeader = "X-Hub-Signature-256"
)

// Errors of Auth.Check; all of them answer 401.
var (
	ErrNoCredentials = errors.New("no credentials: send Authorization: Bearer TOKEN or " + SignatureHeader + ": sha256=HMAC")
	ErrBadToken      = errors.New("wrong bearer token")
	ErrBadSignature  = errors.New("signature does not match the body")
	ErrBadAlgorithm  = errors.New("signature must be sha256=<hex HMAC-SHA256 of the body>")
)

// constantTimeEqual compares secrets in time independent of where they
// differ. Every secret comparison goes through it (tests check that).
var constantTimeEqual = func(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Auth checks a request's credentials: a bearer token, an HMAC-SHA256
// signature of the body, or (only when QueryToken is set, for senders such
// as Docker Hub that cannot set headers) ?token=TOKEN.
type Auth struct {
	Token      []byte
	Secret     []byte
	QueryToken bool
}

// Configured reports whether any credential is set up.
func (a Auth) Configured() bool { return len(a.Token) > 0 || len(a.Secret) > 0 }

// Check authenticates r, whose body is body. Every credential presented
// must be valid, and at least one must be.
func (a Auth) Check(r *http.Request, body []byte) error {
	presented := false
	if h := r.Header.Get("Authorization"); h != "" {
		presented = true
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || len(a.Token) == 0 || !a.tokenOK(strings.TrimSpace(tok)) {
			return ErrBadToken
		}
	}
	for _, name := range []string{SignatureHeader, GitHubSignatureHeader} {
		if sig := r.Header.Get(name); sig != "" {
			presented = true
			if err := a.signatureOK(sig, body); err != nil {
				return err
			}
		}
	}
	if a.QueryToken {
		if tok := r.URL.Query().Get("token"); tok != "" {
			presented = true
			if len(a.Token) == 0 || !a.tokenOK(tok) {
				return ErrBadToken
			}
		}
	}
	if !presented {
		return ErrNoCredentials
	}
	return nil
}

// tokenOK compares hashes so the comparison's time does not depend on the
// token's length either.
func (a Auth) tokenOK(tok string) bool {
	got := sha256.Sum256([]byte(tok))
	want := sha256.Sum256(a.Token)
	return constantTimeEqual(got[:], want[:])
}

func (a Auth) signatureOK(sig string, body []byte) error {
	if len(a.Secret) == 0 {
		return ErrBadSignature
	}
	algo, hexSig, ok := strings.Cut(strings.TrimSpace(sig), "=")
	if !ok || algo != "sha256" {
		return ErrBadAlgorithm
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return ErrBadSignature
	}
	mac := hmac.New(sha256.New, a.Secret)
	mac.Write(body)
	if !constantTimeEqual(got, mac.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}
