package compose

import (
	"slices"
	"strings"
	"testing"
)

// Both tools' `config` output, trimmed to what baton reads.
const v2Config = `name: shop
services:
  db:
    image: postgres:16
  web:
    command:
      - -x
      - "a b"
    depends_on:
      db:
        condition: service_started
        required: true
    environment:
      LIST: a b
      UNSET: null
    image: shop/web:1.4
    labels:
      baton.http-probe: /health
  worker:
    command: run --queue "high prio"
    container_name: shop-worker
    network_mode: "service:web"
    depends_on: [web]
    labels: ["a=1", "b=two=2"]
`

const v1Config = `services:
  web:
    depends_on:
    - db
    environment:
      LIST: a b
    image: shop/web:1.4
  db:
    image: postgres:16
version: '3.9'
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(v2Config))
	if err != nil {
		t.Fatal(err)
	}
	web := c.Services["web"]
	if web.Image != "shop/web:1.4" || !slices.Equal([]string(web.Command), []string{"-x", "a b"}) || web.Labels["baton.http-probe"] != "/health" {
		t.Fatalf("web: %+v", web)
	}
	if got := web.EnvList(); !slices.Equal(got, []string{"LIST=a b"}) {
		t.Fatalf("env %v: an unset variable must not be passed", got)
	}
	if !slices.Equal([]string(web.DependsOn), []string{"db"}) {
		t.Fatalf("depends_on map form: %v", web.DependsOn)
	}
	w := c.Services["worker"]
	if !slices.Equal([]string(w.Command), []string{"run", "--queue", "high prio"}) || w.ContainerName != "shop-worker" || w.NetworkMode != "service:web" {
		t.Fatalf("worker: %+v", w)
	}
	if w.Labels["a"] != "1" || w.Labels["b"] != "two=2" {
		t.Fatalf("labels list form: %v", w.Labels)
	}
	c1, err := ParseConfig([]byte(v1Config))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal([]string(c1.Services["web"].DependsOn), []string{"db"}) {
		t.Fatalf("depends_on list form: %v", c1.Services["web"].DependsOn)
	}
	if _, err := ParseConfig([]byte("services: [")); err == nil {
		t.Fatal("broken YAML accepted")
	}
}

func TestOrder(t *testing.T) {
	c, err := ParseConfig([]byte(v2Config))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Order(c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"db", "web", "worker"}) {
		t.Fatalf("order %v", got)
	}
	cyc, _ := ParseConfig([]byte("services:\n  a: {depends_on: [b]}\n  b: {depends_on: [a]}\n"))
	if _, err := Order(cyc); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("cycle: %v", err)
	}
	// A dependency outside the file (a disabled profile) is not an error.
	ext, _ := ParseConfig([]byte("services:\n  a: {depends_on: [gone]}\n"))
	if got, err := Order(ext); err != nil || !slices.Equal(got, []string{"a"}) {
		t.Fatalf("external dependency: %v %v", got, err)
	}
}

func TestLabelFilesAndMajor(t *testing.T) {
	v1 := map[string]string{LabelConfigFiles: "docker-compose.yml,override.yml", LabelWorkingDir: "/srv/shop"}
	if got := labelFiles(v1); !slices.Equal(got, []string{"/srv/shop/docker-compose.yml", "/srv/shop/override.yml"}) {
		t.Fatalf("v1 relative files: %v", got)
	}
	v2 := map[string]string{LabelConfigFiles: "/srv/shop/docker-compose.yml", LabelWorkingDir: "/srv/shop"}
	if got := labelFiles(v2); !slices.Equal(got, []string{"/srv/shop/docker-compose.yml"}) {
		t.Fatalf("v2 absolute files: %v", got)
	}
	for v, want := range map[string]int{"1.29.2": 1, "2.40.3": 2, "v2": 0, "": 0} {
		if got := major(v); got != want {
			t.Errorf("major(%q) = %d, want %d", v, got, want)
		}
	}
}

func TestUnsetVariables(t *testing.T) {
	for _, tc := range []struct {
		stderr string
		want   []string
	}{
		{"WARNING: The HTTP_PORT variable is not set. Defaulting to a blank string.\n", []string{"HTTP_PORT"}},
		{`time="2026-11-26T05:00:00Z" level=warning msg="The \"TAG\" variable is not set. Defaulting to a blank string."` + "\n" +
			`time="2026-11-26T05:00:00Z" level=warning msg="The \"TAG\" variable is not set. Defaulting to a blank string."` + "\n", []string{"TAG"}},
		{"WARNING: Some networks were defined but are not used by any service: x\n", nil},
		{"", nil},
	} {
		if got := unsetVariables(tc.stderr); !slices.Equal(got, tc.want) {
			t.Errorf("unsetVariables(%q) = %v, want %v", tc.stderr, got, tc.want)
		}
	}
}
