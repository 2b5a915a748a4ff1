package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"regexp"
	"strings"
	"time"

	"github.com/distribution/reference"
)

// Payload formats.
const (
	FormatGeneric      = "generic"
	FormatDockerHub    = "dockerhub"
	FormatDistribution = "distribution"
)

// DistributionMediaType is the Content-Type of registry notifications.
const DistributionMediaType = "application/vnd.docker.distribution.events.v1+json"

// ErrPayload marks a body baton cannot use; it answers 400.
var ErrPayload = errors.New("bad payload")

// Push is one "this repository got this tag" event.
type Push struct {
	Repository string // path without the registry host, e.g. shop/web or library/nginx
	Tag        string
	Digest     string
	Host       string // the registry host the event came from, when it says
	// At is when the registry says the push happened (zero when it does
	// not say). A body-only signature binds no time of its own, so such a
	// notification counts only while its pushes are recent.
	At time.Time
}

// Payload is what a webhook body asks for.
type Payload struct {
	Format string
	// Generic bodies name an image, or a tag of the container's repository,
	// or nothing (pull the container's own reference again).
	Image string
	Tag   string
	// Notification formats (Docker Hub, registry) report pushes: only a push
	// of the container's repository deploys, and nothing else does.
	Notification bool
	Pushes       []Push
	Actor        string
}

var (
	tagRE = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	// Bounded: actors go into logs and the journal.
	maxActor = 200
)

// ParsePayload reads a webhook body. contentType may be empty. An empty body
// is a generic request for the container's own reference.
func ParsePayload(contentType string, body []byte) (Payload, error) {
	body = bytes.TrimSpace(body)
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == DistributionMediaType {
		return parseDistribution(body)
	}
	if len(body) == 0 {
		return Payload{Format: FormatGeneric}, nil
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return Payload{}, fmt.Errorf("%w: want a JSON object: %v", ErrPayload, err)
	}
	switch {
	case probe["events"] != nil:
		return parseDistribution(body)
	case probe["push_data"] != nil && probe["repository"] != nil:
		return parseDockerHub(body)
	}
	return parseGeneric(body)
}

type genericBody struct {
	Image string `json:"image"`
	Tag   string `json:"tag"`
	Actor string `json:"actor"`
}

func parseGeneric(body []byte) (Payload, error) {
	var g genericBody
	if err := json.Unmarshal(body, &g); err != nil {
		return Payload{}, fmt.Errorf("%w: generic body: %v", ErrPayload, err)
	}
	p := Payload{Format: FormatGeneric, Actor: cleanActor(g.Actor)}
	switch {
	case g.Image != "" && g.Tag != "":
		return Payload{}, fmt.Errorf("%w: give image or tag, not both", ErrPayload)
	case g.Image != "":
		named, err := reference.ParseNormalizedNamed(g.Image)
		if err != nil {
			return Payload{}, fmt.Errorf("%w: image %q: %v", ErrPayload, g.Image, err)
		}
		if _, ok := named.(reference.Digested); ok {
			return Payload{}, fmt.Errorf("%w: image %q: deploy a tag, not a digest", ErrPayload, g.Image)
		}
		p.Image = reference.FamiliarString(reference.TagNameOnly(named))
	case g.Tag != "":
		if !tagRE.MatchString(g.Tag) {
			return Payload{}, fmt.Errorf("%w: tag %q is not a valid tag", ErrPayload, g.Tag)
		}
		p.Tag = g.Tag
	}
	return p, nil
}

type dockerHubBody struct {
	PushData struct {
		Tag      string  `json:"tag"`
		Pusher   string  `json:"pusher"`
		PushedAt float64 `json:"pushed_at"`
	} `json:"push_data"`
	Repository struct {
		RepoName  string `json:"repo_name"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"repository"`
}

func parseDockerHub(body []byte) (Payload, error) {
	var h dockerHubBody
	if err := json.Unmarshal(body, &h); err != nil {
		return Payload{}, fmt.Errorf("%w: Docker Hub body: %v", ErrPayload, err)
	}
	repo := h.Repository.RepoName
	if repo == "" && h.Repository.Name != "" {
		repo = h.Repository.Namespace + "/" + h.Repository.Name
	}
	path, err := repoPath(repo)
	if err != nil {
		return Payload{}, err
	}
	if !tagRE.MatchString(h.PushData.Tag) {
		return Payload{}, fmt.Errorf("%w: Docker Hub body: push_data.tag %q is not a valid tag", ErrPayload, h.PushData.Tag)
	}
	var at time.Time
	if h.PushData.PushedAt > 0 && h.PushData.PushedAt < 1<<40 {
		at = time.Unix(int64(h.PushData.PushedAt), 0)
	}
	return Payload{Format: FormatDockerHub, Notification: true, Actor: cleanActor(h.PushData.Pusher),
		Pushes: []Push{{Repository: path, Tag: h.PushData.Tag, Host: "docker.io", At: at}}}, nil
}

type distributionBody struct {
	Events []struct {
		Action    string `json:"action"`
		Timestamp string `json:"timestamp"`
		Target    struct {
			MediaType  string `json:"mediaType"`
			Digest     string `json:"digest"`
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"target"`
		Request struct {
			Host string `json:"host"`
		} `json:"request"`
		Actor struct {
			Name string `json:"name"`
		} `json:"actor"`
	} `json:"events"`
}

// parseDistribution keeps the events that pushed a tagged manifest: layer
// pushes, pushes by digest and every pull (baton's own deploys cause those)
// are not deploys.
func parseDistribution(body []byte) (Payload, error) {
	var d distributionBody
	if err := json.Unmarshal(body, &d); err != nil {
		return Payload{}, fmt.Errorf("%w: registry notification: %v", ErrPayload, err)
	}
	p := Payload{Format: FormatDistribution, Notification: true}
	for _, ev := range d.Events {
		if ev.Action != "push" || ev.Target.Tag == "" || !isManifest(ev.Target.MediaType) {
			continue
		}
		path, err := repoPath(ev.Target.Repository)
		if err != nil {
			return Payload{}, err
		}
		if !tagRE.MatchString(ev.Target.Tag) {
			return Payload{}, fmt.Errorf("%w: registry notification: tag %q is not a valid tag", ErrPayload, ev.Target.Tag)
		}
		at, _ := time.Parse(time.RFC3339Nano, ev.Timestamp) // zero when absent or malformed: not fresh
		p.Pushes = append(p.Pushes, Push{Repository: path, Tag: ev.Target.Tag, Digest: ev.Target.Digest, Host: ev.Request.Host, At: at})
		if a := cleanActor(ev.Actor.Name); a != "" {
			p.Actor = a
		}
	}
	return p, nil
}

func isManifest(mediaType string) bool {
	// Registries older than 2.7 sent an empty media type for manifests.
	return mediaType == "" || strings.Contains(mediaType, "manifest") || strings.Contains(mediaType, "image.index")
}

// pathRE is a repository path as registries accept it (distribution's
// grammar for the part after the host).
var pathRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// repoPath validates a repository path as a registry names it (shop/web;
// no host, tag or digest).
func repoPath(repo string) (string, error) {
	if repo == "" {
		return "", fmt.Errorf("%w: no repository named", ErrPayload)
	}
	if len(repo) > 255 || !pathRE.MatchString(repo) {
		return "", fmt.Errorf("%w: repository %q is not a repository path like shop/web", ErrPayload, repo)
	}
	return repo, nil
}

// samePath compares repository paths, taking Docker Hub's implicit
// library/ into account.
func samePath(a, b string) bool {
	return a == b || "library/"+a == b || a == "library/"+b
}

func cleanActor(s string) string {
	s = strings.Map(func(r rune) rune {
		// C0, DEL and C1: the actor is printed by baton history, and a
		// terminal takes U+009B as the start of an escape sequence too.
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return -1
		}
		return r
	}, s)
	if len(s) > maxActor {
		s = s[:maxActor]
	}
	return strings.TrimSpace(s)
}

// FreshOnly keeps the pushes whose own timestamp is within window of now.
// It is how a body-only signed notification is bounded in time: a captured
// one replayed later deploys nothing.
func (p Payload) FreshOnly(now time.Time, window time.Duration) Payload {
	var keep []Push
	for _, push := range p.Pushes {
		if d := now.Sub(push.At); !push.At.IsZero() && d <= window && d >= -window {
			keep = append(keep, push)
		}
	}
	p.Pushes = keep
	return p
}

// ImageFor decides which image a payload deploys to a container running
// current (its Config.Image). ignore, when non-empty, says why the payload
// does not concern this container (nothing is deployed, and the request is
// answered 200 so a registry does not retry it).
func (p Payload) ImageFor(current string) (image string, ignore string, err error) {
	cur, err := reference.ParseNormalizedNamed(current)
	if err != nil {
		if p.Image != "" {
			return p.Image, "", nil
		}
		return "", "", fmt.Errorf("the container runs %q, not an image name baton can derive a new reference from; send {\"image\": \"REF\"}", current)
	}
	switch {
	case p.Image != "":
		return p.Image, "", nil
	case p.Tag != "":
		return reference.FamiliarString(mustTag(cur, p.Tag)), "", nil
	case !p.Notification:
		return "", "", nil // pull the container's own reference again
	}
	path := reference.Path(cur)
	var pick *Push
	for i := range p.Pushes {
		if samePath(p.Pushes[i].Repository, path) {
			pick = &p.Pushes[i]
		}
	}
	if pick == nil {
		if len(p.Pushes) == 0 {
			return "", "no tagged image push in the notification", nil
		}
		return "", fmt.Sprintf("the notification is about %s, and the container runs %s", p.Pushes[len(p.Pushes)-1].Repository, path), nil
	}
	return reference.FamiliarString(mustTag(cur, pick.Tag)), "", nil
}

// mustTag puts tag on the repository of ref; tag was validated already.
func mustTag(ref reference.Named, tag string) reference.Named {
	t, err := reference.WithTag(reference.TrimNamed(ref), tag)
	if err != nil {
		return ref
	}
	return t
}
