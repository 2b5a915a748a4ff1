package webhook

import (
	"errors"
	"os"
	"testing"
)

// FuzzParsePayload: no body makes the parser panic, every error is an
// ErrPayload, and whatever parses yields either a valid image reference to
// deploy, a reason to ignore it, or the container's own tag.
func FuzzParsePayload(f *testing.F) {
	recorded, err := os.ReadFile("testdata/registry-push.json")
	if err != nil {
		f.Fatal(err)
	}
	seeds := []struct{ ct, body string }{
		{"", ""},
		{"application/json", `{"image":"127.0.0.1:5000/shop/web:1.5","actor":"ci"}`},
		{"", `{"tag":"1.6"}`},
		{"", `{"push_data":{"tag":"1.7","pusher":"alice"},"repository":{"repo_name":"shop/web"}}`},
		{DistributionMediaType, string(recorded)},
		{DistributionMediaType, `{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.index.v1+json","repository":"shop/web","tag":"2"}}]}`},
		{"", `{"events":null}`},
		{"application/json; charset=utf-8", `{"image":""}`},
	}
	for _, s := range seeds {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		if len(body) > DefaultMaxBody {
			return // the server refuses these before parsing
		}
		p, err := ParsePayload(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrPayload) {
				t.Fatalf("error %v is not an ErrPayload", err)
			}
			return
		}
		for _, current := range []string{"127.0.0.1:5000/shop/web:1.4", "nginx", "sha256:abc"} {
			img, ignore, err := p.ImageFor(current)
			if err != nil || ignore != "" || img == "" {
				continue
			}
			if _, _, err := (Payload{Format: FormatGeneric, Image: img}).ImageFor(current); err != nil {
				t.Fatalf("ImageFor(%q) gave %q, which does not parse back: %v", current, img, err)
			}
			if _, err := ParsePayload("", []byte(`{"image":"`+img+`"}`)); err != nil {
				t.Fatalf("ImageFor(%q) gave %q, not a valid image reference: %v", current, img, err)
			}
		}
	})
}
