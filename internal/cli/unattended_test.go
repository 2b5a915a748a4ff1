package cli

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/baton-sh/baton/dockerctl"
	"github.com/baton-sh/baton/internal/unattended"
	"github.com/baton-sh/baton/internal/webhook"
)

// fakeSwarmEngine is a Docker engine on a unix socket that has no
// containers and one opted-in Swarm service, web. It counts the requests
// that asked about services.
func fakeSwarmEngine(t *testing.T) (*dockerctl.Client, *atomic.Int32) {
	t.Helper()
	var serviceCalls atomic.Int32
	svc := swarm.Service{ID: "svcid1", Spec: swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "web", Labels: map[string]string{unattended.LabelEnable: "true"}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "registry.test/web:1@sha256:" + strings.Repeat("a", 64)}},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.43")
		w.Header().Set("Content-Type", "application/json")
		p := r.URL.Path
		if i := strings.Index(p[1:], "/"); strings.HasPrefix(p, "/v1.") && i > 0 {
			p = p[i+1:] // drop the API version
		}
		switch {
		case p == "/_ping":
			_, _ = w.Write([]byte("OK"))
		case strings.HasPrefix(p, "/containers/"):
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"No such container: web"}`))
		case p == "/services":
			serviceCalls.Add(1)
			_ = json.NewEncoder(w).Encode([]swarm.Service{svc})
		case p == "/services/web":
			serviceCalls.Add(1)
			_ = json.NewEncoder(w).Encode(svc)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"not in this fake: ` + p + `"}`))
		}
	})
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	eng, err := dockerctl.NewAt(context.Background(), "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng, &serviceCalls
}

// TestUnattendedAcrossHostsSkipsServices: watch and serve --hosts run a
// container rollout per request, which cannot deploy a Swarm service, so
// the last host's services are neither listed for watch nor accepted by a
// webhook (404, no job); on one host (the control) both see the service.
func TestUnattendedAcrossHostsSkipsServices(t *testing.T) {
	eng, calls := fakeSwarmEngine(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	multi := &unattendedRun{log: log, eng: eng, multi: true}
	if l := multi.serviceLister(); l != nil {
		t.Errorf("across hosts: watch lists services through %T; want none", l)
	}
	_, err := multi.resolve(ctx, "web")
	if !errors.Is(err, webhook.ErrNotFound) || !strings.Contains(err.Error(), "across hosts") {
		t.Errorf("across hosts, a webhook for service web: %v; want not found, saying why", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("across hosts: %d requests about services reached the engine; want 0", n)
	}

	// Control: one host watches and accepts the service.
	single := &unattendedRun{log: log, eng: eng}
	l := single.serviceLister()
	if l == nil {
		t.Fatal("one host: watch lists no services")
	}
	list, err := l.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil || len(list) != 1 || list[0].Spec.Name != "web" {
		t.Errorf("one host: services %v, %v; want web", list, err)
	}
	ref, err := single.resolve(ctx, "web")
	if err != nil || ref != "registry.test/web:1" {
		t.Errorf("one host, a webhook for service web: %q, %v; want registry.test/web:1", ref, err)
	}
	if calls.Load() == 0 {
		t.Error("one host: no request about services reached the engine")
	}
}
