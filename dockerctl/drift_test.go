package dockerctl

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
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

// TestCloneClassifiesEveryField: every field of the engine's container
// settings has a fate in drift.go's tables, and the clone does what the
// table says. A Docker SDK that gains a field fails here until the field is
// classified (and, if it cannot be carried, named by Drift), so no setting
// is lost silently. The behaviour is checked on an old container with every
// field set (reflection fills them), cloned against images with no
// defaults, so everything the user set is the user's.
func TestCloneClassifiesEveryField(t *testing.T) {
	for _, tc := range []struct {
		typ   reflect.Type
		fates map[string]fieldFate
	}{
		{reflect.TypeFor[container.Config](), configFates},
		{reflect.TypeFor[container.HostConfig](), hostConfigFates},
		{reflect.TypeFor[network.EndpointSettings](), endpointFates},
	} {
		seen := map[string]bool{}
		for _, f := range reflect.VisibleFields(tc.typ) {
			if f.Anonymous || !f.IsExported() {
				continue // an embedded struct's fields are listed themselves
			}
			seen[f.Name] = true
			if _, ok := tc.fates[f.Name]; !ok {
				t.Errorf("%s.%s (%s) has no fate in dockerctl/drift.go: say whether a clone copies it, changes it, or cannot carry it (then Drift must name it)", tc.typ, f.Name, f.Type)
			}
		}
		for name := range tc.fates {
			if !seen[name] {
				t.Errorf("drift.go classifies %s.%s, which the SDK no longer has", tc.typ, name)
			}
		}
	}

	oldCfg, oldHC, oldEP := &container.Config{}, &container.HostConfig{}, &network.EndpointSettings{}
	fillValue(reflect.ValueOf(oldCfg).Elem())
	fillValue(reflect.ValueOf(oldHC).Elem())
	fillValue(reflect.ValueOf(oldEP).Elem())
	oldHC.NetworkMode = "shop"
	oldEP.Aliases = []string{"db"} // not the hostname, which the engine adds itself
	old := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: strings.Repeat("ab", 32), Name: "/web", HostConfig: oldHC},
		Config:            oldCfg,
		NetworkSettings:   &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"shop": oldEP}},
	}
	spec, err := CloneConfig(old, image.InspectResponse{}, image.InspectResponse{}, "web:2")
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Networks) != 1 || spec.Networks[0].Endpoint == nil {
		t.Fatalf("clone networks %+v, want the one on shop", spec.Networks)
	}
	for _, c := range []struct {
		old, clone any
		fates      map[string]fieldFate
	}{
		{oldCfg, spec.Config, configFates},
		{oldHC, spec.HostConfig, hostConfigFates},
		{oldEP, spec.Networks[0].Endpoint, endpointFates},
	} {
		o, n := reflect.ValueOf(c.old).Elem(), reflect.ValueOf(c.clone).Elem()
		for _, f := range reflect.VisibleFields(o.Type()) {
			if f.Anonymous || !f.IsExported() {
				continue
			}
			ov, nv := o.FieldByIndex(f.Index).Interface(), n.FieldByIndex(f.Index).Interface()
			switch fate := c.fates[f.Name]; fate {
			case fateCopied:
				if !reflect.DeepEqual(ov, nv) {
					t.Errorf("%s.%s is classified copied, but the clone has %#v for %#v", o.Type(), f.Name, nv, ov)
				}
			case fateBuildOnly, fateRuntime, fateDrift:
				if !n.FieldByIndex(f.Index).IsZero() {
					t.Errorf("%s.%s is classified %s, but the clone carries %#v", o.Type(), f.Name, fate, nv)
				}
			case fateChanged:
				if reflect.DeepEqual(ov, nv) {
					t.Errorf("%s.%s is classified changed, but the clone has it as it was: %#v", o.Type(), f.Name, nv)
				}
			}
		}
	}
	if d := Drift(old, spec); len(d) != 1 || d[0].Field != DriftMACAddress {
		t.Errorf("drift of the filled container: %+v, want the MAC address (its one field classified drift that Drift sees)", d)
	}
}

// fillValue sets every exported field (and element) reachable from v to a
// non-zero value.
func fillValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x" + strconv.Itoa(int(v.Type().Size())))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(7)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillValue(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillValue(v.Index(0))
	case reflect.Array:
		for i := range v.Len() {
			fillValue(v.Index(i))
		}
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillValue(k)
		fillValue(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for _, f := range reflect.VisibleFields(v.Type()) {
			if f.IsExported() && !f.Anonymous {
				fillValue(v.FieldByIndex(f.Index))
			}
		}
	}
}
