package healthcheck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// The real client must satisfy Engine, or the fake proves nothing.
var _ Engine = (*client.Client)(nil)

const fakeID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeEngine is a stateful stand-in for the Docker Engine: tests push events
// into it and change what inspect returns, as the daemon would.
type fakeEngine struct {
	mu        sync.Mutex
	info      container.InspectResponse
	logs      []byte // the raw stream ContainerLogs returns
	calls     []string
	eventOpts events.ListOptions
	logsOpts  container.LogsOptions
	// logsCtxErr is ctx.Err() as ContainerLogs saw it.
	logsCtxErr error
	inspected  chan struct{} // closed at the first inspect
	once       sync.Once
	events     chan events.Message
}

func newFakeEngine(status container.ContainerState, health string) *fakeEngine {
	st := &container.State{Status: status, Running: status == container.StateRunning}
	cfg := &container.Config{}
	if health != "" {
		st.Health = &container.Health{Status: health}
		cfg.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "/demoapp", "-probe", "http://127.0.0.1:8080/healthz"}}
	}
	return &fakeEngine{
		info: container.InspectResponse{
			ContainerJSONBase: &container.ContainerJSONBase{ID: fakeID, Name: "/web-1", State: st},
			Config:            cfg,
		},
		inspected: make(chan struct{}),
		events:    make(chan events.Message, 16),
	}
}

func (f *fakeEngine) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "inspect")
	defer f.once.Do(func() { close(f.inspected) })
	if err := ctx.Err(); err != nil {
		return container.InspectResponse{}, err
	}
	if id != fakeID && id != "web-1" {
		return container.InspectResponse{}, fmt.Errorf("no such container %s: %w", id, cerrdefs.ErrNotFound)
	}
	// Copy what Wait could alias, so later changes act like a new answer.
	info := f.info
	base := *info.ContainerJSONBase
	st := *base.State
	if st.Health != nil {
		h := *st.Health
		st.Health = &h
	}
	base.State = &st
	info.ContainerJSONBase = &base
	return info, nil
}

func (f *fakeEngine) Events(ctx context.Context, opts events.ListOptions) (<-chan events.Message, <-chan error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "events")
	f.eventOpts = opts
	errs := make(chan error, 1)
	go func() {
		<-ctx.Done()
		errs <- ctx.Err()
	}()
	return f.events, errs
}

func (f *fakeEngine) ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "logs")
	f.logsOpts = opts
	f.logsCtxErr = ctx.Err()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(f.logs)), nil
}

// setState changes what the next inspect returns.
func (f *fakeEngine) setState(fn func(st *container.State, info *container.InspectResponse)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.info.State, &f.info)
}

// setLogs stores lines as the daemon frames them for a container without a
// TTY: odd lines on stdout, even ones on stderr.
func (f *fakeEngine) setLogs(t *testing.T, lines ...string) {
	t.Helper()
	var buf bytes.Buffer
	out := stdcopy.NewStdWriter(&buf, stdcopy.Stdout)
	errw := stdcopy.NewStdWriter(&buf, stdcopy.Stderr)
	for i, l := range lines {
		w := out
		if i%2 == 1 {
			w = errw
		}
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	f.logs = buf.Bytes()
	f.mu.Unlock()
}

func (f *fakeEngine) push(action events.Action, attrs map[string]string) {
	f.pushFor(fakeID, action, attrs)
}

func (f *fakeEngine) pushFor(id string, action events.Action, attrs map[string]string) {
	f.events <- events.Message{
		Type:     events.ContainerEventType,
		Action:   action,
		Actor:    events.Actor{ID: id, Attributes: attrs},
		TimeNano: time.Now().UnixNano(),
	}
}

func (f *fakeEngine) callLog() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

// waitResult runs Wait in the background.
func startWait(ctx context.Context, eng Engine, spec Spec) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Wait(ctx, eng, spec) }()
	return done
}

func awaitInspect(t *testing.T, f *fakeEngine) {
	t.Helper()
	select {
	case <-f.inspected:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait never inspected the container")
	}
}

func awaitResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
		return nil
	}
}
