package dockerctl

import (
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
)

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijk"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("write %q: %d %v", s, n, err)
		}
	}
	if got := b.String(); got != "...(cut)\ndefghijk" {
		t.Fatalf("tail %q", got)
	}
	b = &tailBuffer{max: 4}
	_, _ = b.Write([]byte("0123456789"))
	if got := b.String(); !strings.HasSuffix(got, "6789") || !strings.HasPrefix(got, "...(cut)") {
		t.Fatalf("long write: %q", got)
	}
	b = &tailBuffer{max: 4}
	_, _ = b.Write([]byte("ab"))
	if b.String() != "ab" {
		t.Fatalf("short: %q", b.String())
	}
}

func TestDriftTable(t *testing.T) {
	withMAC := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: "c", Name: "/web", HostConfig: &container.HostConfig{}},
		Config: &container.Config{Image: "web:1", MacAddress: "02:42:ac:11:00:99"}} //nolint:staticcheck // SA1019: API 1.41 form
	plain := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: "c", Name: "/web", HostConfig: &container.HostConfig{}},
		Config: &container.Config{Image: "web:1"}}
	for _, tc := range []struct {
		name string
		old  container.InspectResponse
		want []string
	}{
		{"chosen MAC", withMAC, []string{DriftMACAddress}},
		{"nothing lost", plain, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &CloneSpec{Config: &container.Config{Image: "web:2"}, HostConfig: &container.HostConfig{}}
			var got []string
			for _, d := range Drift(tc.old, spec) {
				got = append(got, d.Field)
				if d.Old == "" || d.Reason == "" || d.Instead == "" {
					t.Fatalf("drift %+v lacks its explanation", d)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("drift %v, want %v", got, tc.want)
			}
		})
	}
	// The clone CloneConfig makes never carries the MAC, so a real clone of
	// a container with one drifts.
	old := createOld(container.Config{MacAddress: "02:42:ac:11:00:99"}, container.HostConfig{NetworkMode: "shop"}) //nolint:staticcheck // SA1019
	spec, _ := cloneToV2(t, old)
	if d := Drift(old, spec); len(d) != 1 {
		t.Fatalf("clone of a container with a chosen MAC: drift %+v", d)
	}
	for _, v := range []string{"mac-address", " mac-address , mac-address", ""} {
		if _, err := ParseDriftFields(v); err != nil {
			t.Fatalf("ParseDriftFields(%q): %v", v, err)
		}
	}
	if _, err := ParseDriftFields("hostname"); err == nil {
		t.Fatal("unknown field accepted")
	}
}
