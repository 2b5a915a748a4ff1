package webhook

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParsePayload(t *testing.T) {
	recorded, err := os.ReadFile("testdata/registry-push.json")
	if err != nil {
		t.Fatal(err)
	}
	const current = "127.0.0.1:5000/shop/web:1.4"
	cases := []struct {
		name, contentType, body string
		format                  string
		image, ignore, errWant  string
		actor                   string
	}{
		{name: "empty body: the container's own tag", format: FormatGeneric, image: ""},
		{name: "empty object", body: `{}`, format: FormatGeneric},
		{name: "generic image", body: `{"image":"127.0.0.1:5000/shop/web:1.5","actor":"ci"}`, format: FormatGeneric, image: "127.0.0.1:5000/shop/web:1.5", actor: "ci"},
		{name: "generic image, no tag means latest", body: `{"image":"nginx"}`, format: FormatGeneric, image: "nginx:latest"},
		{name: "generic tag", body: `{"tag":"1.6"}`, format: FormatGeneric, image: "127.0.0.1:5000/shop/web:1.6"},
		{name: "generic both", body: `{"tag":"1.6","image":"x:1"}`, errWant: "not both"},
		{name: "generic bad tag", body: `{"tag":"-x"}`, errWant: "not a valid tag"},
		{name: "generic bad image", body: `{"image":"shop/Web:1"}`, errWant: "invalid reference"},
		{name: "generic digest image", body: `{"image":"x@sha256:` + strings.Repeat("a", 64) + `"}`, errWant: "not a digest"},
		{name: "generic wrong type", body: `{"image":5}`, errWant: "generic body"},
		{name: "not an object", body: `[1,2]`, errWant: "JSON object"},
		{name: "not JSON", body: `image=x`, errWant: "JSON object"},
		{name: "docker hub", body: `{"push_data":{"tag":"1.7","pusher":"alice"},"repository":{"repo_name":"shop/web","name":"web","namespace":"shop"}}`,
			format: FormatDockerHub, image: "127.0.0.1:5000/shop/web:1.7", actor: "alice"},
		{name: "docker hub, other repository", body: `{"push_data":{"tag":"1.7"},"repository":{"repo_name":"shop/api"}}`,
			format: FormatDockerHub, ignore: "shop/api"},
		{name: "docker hub, bad tag", body: `{"push_data":{"tag":""},"repository":{"repo_name":"shop/web"}}`, errWant: "push_data.tag"},
		{name: "docker hub, bad repository", body: `{"push_data":{"tag":"1"},"repository":{"repo_name":"Shop/Web"}}`, errWant: "repository"},
		{name: "registry notification as recorded", contentType: DistributionMediaType, body: string(recorded),
			format: FormatDistribution, image: "127.0.0.1:5000/shop/web:1.4"},
		{name: "registry notification without content type", body: string(recorded), format: FormatDistribution, image: "127.0.0.1:5000/shop/web:1.4"},
		{name: "registry notification, pull only", contentType: DistributionMediaType, body: strings.Replace(string(recorded), `"push"`, `"pull"`, 1),
			format: FormatDistribution, ignore: "no tagged image push"},
		{name: "registry notification, layer push only", contentType: DistributionMediaType,
			body:   `{"events":[{"action":"push","target":{"mediaType":"application/octet-stream","repository":"shop/web","digest":"sha256:aa"}}]}`,
			format: FormatDistribution, ignore: "no tagged image push"},
		{name: "registry notification, other repository", contentType: DistributionMediaType,
			body:   `{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.index.v1+json","repository":"shop/api","tag":"2"}}]}`,
			format: FormatDistribution, ignore: "shop/api"},
		{name: "registry notification, last push of the repository wins", contentType: DistributionMediaType,
			body: `{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"shop/web","tag":"2"},"actor":{"name":"bob"}},` +
				`{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"shop/web","tag":"3"}},` +
				`{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"shop/api","tag":"4"}}]}`,
			format: FormatDistribution, image: "127.0.0.1:5000/shop/web:3", actor: "bob"},
		{name: "registry notification, bad repository", contentType: DistributionMediaType,
			body: `{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"../x","tag":"2"}}]}`, errWant: "repository"},
		{name: "registry notification, not JSON", contentType: DistributionMediaType, body: `{"events":`, errWant: "registry notification"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParsePayload(c.contentType, []byte(c.body))
			if c.errWant != "" {
				if !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), c.errWant) {
					t.Fatalf("err = %v, want ErrPayload mentioning %q", err, c.errWant)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Format != c.format || p.Actor != c.actor {
				t.Fatalf("format %q actor %q, want %q %q", p.Format, p.Actor, c.format, c.actor)
			}
			img, ignore, err := p.ImageFor(current)
			if err != nil {
				t.Fatal(err)
			}
			if img != c.image || (c.ignore == "") != (ignore == "") || !strings.Contains(ignore, c.ignore) {
				t.Fatalf("ImageFor = %q, ignore %q; want %q, ignore containing %q", img, ignore, c.image, c.ignore)
			}
		})
	}
}

// Docker Hub's official images are library/NAME; the container says NAME.
func TestImageForDockerHubLibrary(t *testing.T) {
	p, err := ParsePayload("", []byte(`{"push_data":{"tag":"1.27"},"repository":{"repo_name":"library/nginx"}}`))
	if err != nil {
		t.Fatal(err)
	}
	img, ignore, err := p.ImageFor("nginx:1.25")
	if err != nil || ignore != "" || img != "nginx:1.27" {
		t.Fatalf("ImageFor = %q %q %v", img, ignore, err)
	}
}

func TestActorIsCleaned(t *testing.T) {
	p, err := ParsePayload("", []byte(`{"actor":"eve\n\u001b[31m`+strings.Repeat("x", 500)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(p.Actor, "\n\x1b") || len(p.Actor) > maxActor {
		t.Fatalf("actor %q", p.Actor)
	}
	// C1's CSI (U+009B) starts an escape sequence as ESC [ does; the rest,
	// accented letters included, stays (the positive control).
	p, err = ParsePayload("", []byte(`{"actor":"\u009b31mzoë"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Actor != "31mzoë" {
		t.Fatalf("actor %q, want the CSI dropped and the rest kept", p.Actor)
	}
}
