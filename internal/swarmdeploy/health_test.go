package swarmdeploy

import (
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"

	"github.com/baton-sh/baton/internal/deploy"
)

func withoutStartInterval(hc *container.HealthConfig) *container.HealthConfig {
	c := *hc
	c.StartInterval = 0
	return &c
}

func TestDecideHealth(t *testing.T) {
	demo := []string{"/demoapp", "-probe"}
	set := &container.HealthConfig{Test: []string{"CMD", "/demoapp", "-probe", "http://127.0.0.1:8080/healthz"},
		Interval: probeInterval, StartInterval: probeStartInterval, Timeout: probeTimeout, StartPeriod: DefaultHealth, Retries: probeRetries}
	port := func(n uint32) *swarm.EndpointSpec {
		return &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: n, PublishedPort: 18000, PublishMode: swarm.PortConfigPublishModeHost}}}
	}
	for _, tc := range []struct {
		name     string
		cur      *container.HealthConfig
		ep       *swarm.EndpointSpec
		img      imageFacts
		probe    Probe
		wantTest string // "" no change
		wantErr  string // "" no error; else a part of the message (exit 2)
		wantNote string
	}{
		{name: "no flags, image has a HEALTHCHECK", img: imageFacts{known: true, healthcheck: true}},
		{name: "no flags, nothing to gate on", img: imageFacts{known: true}, wantNote: "has no HEALTHCHECK"},
		{name: "no flags, image unknown", img: imageFacts{}},
		{name: "no flags, HEALTHCHECK disabled", cur: &container.HealthConfig{Test: []string{"NONE"}}, img: imageFacts{known: true, healthcheck: true}, wantNote: "disables its HEALTHCHECK"},
		{name: "a changed probe on an old engine still changes", cur: withoutStartInterval(set), img: imageFacts{known: true, ports: []int{8080}},
			probe: Probe{HTTPPath: "/up", Cmd: demo}, wantTest: "/demoapp -probe http://127.0.0.1:8080/up"},
		{name: "http probe with a command, image port", img: imageFacts{known: true, ports: []int{8080}},
			probe: Probe{HTTPPath: "/healthz", Cmd: demo}, wantTest: "/demoapp -probe http://127.0.0.1:8080/healthz"},
		{name: "http probe, service target port wins over the image's", ep: port(9090), img: imageFacts{known: true, ports: []int{8080}},
			probe: Probe{HTTPPath: "/up", Cmd: demo}, wantTest: "/demoapp -probe http://127.0.0.1:9090/up"},
		{name: "http probe, --port wins", ep: port(9090), probe: Probe{HTTPPath: "/up", Cmd: demo, Port: 7070}, wantTest: "/demoapp -probe http://127.0.0.1:7070/up"},
		{name: "http probe replaces the image's HEALTHCHECK", img: imageFacts{known: true, healthcheck: true, ports: []int{8080}},
			probe: Probe{HTTPPath: "/healthz", Cmd: demo}, wantTest: "/demoapp -probe http://127.0.0.1:8080/healthz"},
		{name: "the same probe again changes nothing", cur: set, img: imageFacts{known: true, ports: []int{8080}}, probe: Probe{HTTPPath: "/healthz", Cmd: demo}},
		// An engine before API 1.44 stores no StartInterval.
		{name: "the same probe read back from an old engine changes nothing", cur: withoutStartInterval(set), img: imageFacts{known: true, ports: []int{8080}}, probe: Probe{HTTPPath: "/healthz", Cmd: demo}},
		{name: "http probe without a command refused", img: imageFacts{known: true, ports: []int{8080}}, probe: Probe{HTTPPath: "/healthz"}, wantErr: "needs --probe-cmd"},
		{name: "tcp probe refused", img: imageFacts{known: true, ports: []int{8080}}, probe: Probe{TCP: true, Cmd: demo}, wantErr: "--tcp-probe cannot run"},
		{name: "command without a path refused", probe: Probe{Cmd: demo}, wantErr: "needs --http-probe"},
		{name: "port alone refused", probe: Probe{Port: 8080}, wantErr: "--port for service web"},
		{name: "relative path refused", img: imageFacts{known: true, ports: []int{8080}}, probe: Probe{HTTPPath: "healthz", Cmd: demo}, wantErr: "starting with /"},
		{name: "no port known refused", img: imageFacts{known: true, ports: []int{80, 443}}, probe: Probe{HTTPPath: "/", Cmd: demo}, wantErr: "give --port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "web"}, EndpointSpec: tc.ep,
				TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "web:1", Healthcheck: tc.cur}}}
			hc, change, note, err := decideHealth(spec, tc.img, tc.probe, 0, false)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || deploy.ExitCode(err) != 2 {
					t.Fatalf("err %v (exit %d), want one with %q, exit 2", err, deploy.ExitCode(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(note, tc.wantNote) || (tc.wantNote == "" && note != "") {
				t.Errorf("note %q, want %q", note, tc.wantNote)
			}
			if tc.wantTest == "" {
				if hc != nil {
					t.Fatalf("healthcheck set to %v, want unchanged", hc.Test)
				}
				return
			}
			if hc == nil || strings.Join(hc.Test, " ") != "CMD "+tc.wantTest || hc.StartPeriod != DefaultHealth || !strings.Contains(change, tc.wantTest) {
				t.Fatalf("healthcheck %+v (%q), want CMD %s", hc, change, tc.wantTest)
			}
		})
	}
}

// A probe's HEALTHCHECK goes into the update's task template; a probe that
// cannot run changes nothing.
func TestDeploySetsProbeHealthcheck(t *testing.T) {
	f := newFake(swarm.PortConfig{TargetPort: 8080, PublishedPort: 18080, PublishMode: swarm.PortConfigPublishModeHost})
	_, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2", Probe: Probe{HTTPPath: "/healthz"}})
	if deploy.ExitCode(err) != 2 || len(f.updates) != 0 {
		t.Fatalf("probe without a command: %v (exit %d), %d updates", err, deploy.ExitCode(err), len(f.updates))
	}
	res, err := deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2", HealthTimeout: 20 * time.Second,
		Probe: Probe{HTTPPath: "/healthz", Cmd: []string{"/demoapp", "-probe"}}})
	if err != nil || res.Outcome != deploy.OutcomeDeployed || len(f.updates) != 1 {
		t.Fatalf("probe: %v, outcome %s, %d updates", err, res.Outcome, len(f.updates))
	}
	hc := f.updates[0].TaskTemplate.ContainerSpec.Healthcheck
	if hc == nil || strings.Join(hc.Test, " ") != "CMD /demoapp -probe http://127.0.0.1:8080/healthz" || hc.StartPeriod != 20*time.Second {
		t.Fatalf("update's healthcheck: %+v", hc)
	}
	// The same probe on the same image: up to date.
	res, err = deployer(f, false).Deploy(t.Context(), Options{Service: "web", Image: "shop/web:2", HealthTimeout: 20 * time.Second,
		Probe: Probe{HTTPPath: "/healthz", Cmd: []string{"/demoapp", "-probe"}}})
	if err != nil || res.Outcome != deploy.OutcomeUpToDate || len(f.updates) != 1 {
		t.Fatalf("same probe again: %v, outcome %s, %d updates", err, res.Outcome, len(f.updates))
	}
}
