package webhook

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/distribution/reference"
)

// ErrForeignImage refuses an image outside the target's own repository that
// the operator did not allow; it answers 403.
var ErrForeignImage = errors.New("image not allowed for this container")

// RepoPolicy decides which images a webhook may deploy onto a container:
// tags of the repository the container runs (registry host and path, as
// distribution/reference normalizes them), plus repositories the operator
// allows by flag or configuration (never by a label, which an image author
// could set).
type RepoPolicy struct {
	allow []string // normalized patterns
}

// NewRepoPolicy validates the operator's patterns: a repository name, host
// included or not (shop/web is docker.io/shop/web, as docker reads it), in
// which * matches within one path component (registry.example/shop/*).
func NewRepoPolicy(patterns []string) (RepoPolicy, error) {
	var p RepoPolicy
	for _, raw := range patterns {
		pat := strings.TrimSpace(raw)
		if pat == "" {
			continue
		}
		if strings.ContainsAny(pat, "@") || strings.Contains(pat[strings.LastIndex(pat, "/")+1:], ":") {
			return RepoPolicy{}, fmt.Errorf("repository pattern %q: name a repository (host/path), without tag or digest", raw)
		}
		norm := normalizePattern(pat)
		if _, err := path.Match(norm, "x"); err != nil {
			return RepoPolicy{}, fmt.Errorf("repository pattern %q: %w", raw, err)
		}
		p.allow = append(p.allow, norm)
	}
	return p, nil
}

// normalizePattern applies docker's rules for the registry host to a pattern:
// a first component without a dot or colon that is not localhost is a path
// on docker.io, and a single component is under library/.
func normalizePattern(pat string) string {
	first, rest, found := strings.Cut(pat, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return strings.ToLower(first) + "/" + rest
	}
	if !found {
		pat = "library/" + pat
	}
	return "docker.io/" + pat
}

// Allowed reports whether the operator's patterns allow repository name
// (normalized, e.g. docker.io/library/nginx).
func (p RepoPolicy) Allowed(name string) bool {
	for _, pat := range p.allow {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// Patterns returns the normalized allowlist (for logs).
func (p RepoPolicy) Patterns() []string { return append([]string(nil), p.allow...) }

// Check returns nil when image may be deployed onto a container running
// current (its Config.Image), else ErrForeignImage saying why. An empty
// image pulls the container's own reference again, which is always allowed.
func (p RepoPolicy) Check(current, image string) error {
	if image == "" {
		return nil
	}
	img, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return fmt.Errorf("%w: %q is not an image reference: %v", ErrForeignImage, image, err)
	}
	want := img.Name()
	cur, err := reference.ParseNormalizedNamed(current)
	if err == nil && cur.Name() == want {
		return nil
	}
	if p.Allowed(want) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: the container runs %q, which names no repository, and %s is not in --allow-repository", ErrForeignImage, current, want)
	}
	return fmt.Errorf("%w: %s is not the container's repository %s; an operator can allow it with --allow-repository %s", ErrForeignImage, want, cur.Name(), want)
}
