package traffic

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/baton-sh/baton/internal/relay"
)

const (
	// relayControlPort is the relay's TCP control port on its service's
	// network.
	relayControlPort = 9091
	// relayTokenEnv holds the control token in the relay container's
	// environment: readable only by whoever may inspect the container.
	relayTokenEnv = "BATON_RELAY_TOKEN"
)

// relayController is the relay's control protocol, over TCP or docker exec.
type relayController interface {
	Status(ctx context.Context) (relay.Status, error)
	Set(ctx context.Context, t relay.Target) (relay.Status, error)
	WaitDrained(ctx context.Context, name string, timeout time.Duration) (relay.WaitResult, error)
	Forget(ctx context.Context, name string) error
	Split(ctx context.Context, canary relay.Target, percent int) (relay.Status, error)
}

// control returns the fastest way to talk to the service's relay: its TCP
// control port on its service's network (a round trip) when this baton can reach
// it, else a docker exec of `baton relay ctl` in the relay container
// (hundreds of milliseconds each, but it needs nothing but the Docker API).
func (t *Relay) control(ctx context.Context) (relayController, error) {
	if t.ctl != nil {
		return t.ctl, nil
	}
	name := RelayName(t.svc.Key)
	c, err := t.eng.ContainerInspect(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("relay container %s: %w", name, err)
	}
	token := envValue(c.Config.Env, relayTokenEnv)
	if t.dialVia != nil {
		// An engine on another machine: the relay's address is not
		// reachable from here (and may be another container's here), so
		// the control connection is made from inside the relay container,
		// to its own control port; it is kept across calls.
		if token == "" {
			t.ctl = &execControl{eng: t.eng, container: name}
			return t.ctl, nil
		}
		dial := func(ctx context.Context, _, addr string) (net.Conn, error) { return t.dialVia(ctx, name, addr) }
		ctlAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(relayControlPort))
		if relayOnHost(c) {
			// In the host's namespace the control port is the one its label
			// records, on that host's loopback.
			ctlAddr = c.Config.Labels[LabelRelayControl]
		}
		client, err := relay.DialTCPWith(ctx, dial, ctlAddr, token)
		if err != nil {
			t.log.Debug("relay control through docker exec dial failed; using docker exec of relay ctl", "container", name, "error", err)
			t.ctl = &execControl{eng: t.eng, container: name}
			return t.ctl, nil
		}
		t.ctl = tcpControl{c: client, exec: &execControl{eng: t.eng, container: name}, log: t.log}
		return t.ctl, nil
	}
	var addr string
	switch {
	case relayOnHost(c):
		// On the host's loopback: reachable when this baton runs on the
		// host, not from a container (then exec).
		addr = c.Config.Labels[LabelRelayControl]
	default:
		if n, ok := c.NetworkSettings.Networks[t.serviceNet(ctx)]; ok && n != nil && n.IPAddress != "" {
			addr = net.JoinHostPort(n.IPAddress, strconv.Itoa(relayControlPort))
		}
	}
	if token != "" && addr != "" {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		client, err := relay.DialTCP(dctx, addr, token)
		cancel()
		if err == nil {
			t.ctl = tcpControl{c: client, exec: &execControl{eng: t.eng, container: name}, log: t.log}
			return t.ctl, nil
		}
		t.log.Debug("relay control over TCP unreachable; using docker exec", "container", name, "error", err)
	}
	t.ctl = &execControl{eng: t.eng, container: name}
	return t.ctl, nil
}

func (t *Relay) serviceNet(ctx context.Context) string {
	n, err := t.eng.EnsureServiceNetwork(ctx, t.svc.Key)
	if err != nil {
		return ""
	}
	return n
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

func newToken() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a relay control token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// tcpControl is the relay's control protocol over its TCP port. A call
// the TCP port does not answer (the relay refuses connections beyond its
// caps, say while a container floods the port) goes over docker exec
// instead: the relay's unix socket has limits of its own, which nothing on
// the network can fill, so baton's own calls always get through.
type tcpControl struct {
	c    *relay.Client
	exec *execControl
	log  *slog.Logger
}

// fallback reports whether a TCP call's error is the transport's (worth
// repeating over exec), not the relay's answer or the caller's deadline.
// "unauthorized" counts as the transport's: the relay's own token is what
// baton sends, so a relay refusing it is another one, answering on that port
// in this network namespace (a relay in an engine's host namespace that is
// not this process's); exec reaches the right one.
func (c tcpControl) fallback(ctx context.Context, op string, err error) bool {
	var re *relay.RemoteError
	if err == nil || ctx.Err() != nil || (errors.As(err, &re) && re.Code != "unavailable" && re.Code != "unauthorized") {
		return false
	}
	c.log.Warn("relay control over TCP failed; using docker exec", "container", c.exec.container, "op", op, "error", err)
	return true
}

func (c tcpControl) Status(ctx context.Context) (relay.Status, error) {
	st, err := c.c.Status(ctx)
	if c.fallback(ctx, "status", err) {
		return c.exec.Status(ctx)
	}
	return st, err
}

func (c tcpControl) Set(ctx context.Context, t relay.Target) (relay.Status, error) {
	st, err := c.c.Set(ctx, t)
	if c.fallback(ctx, "set", err) {
		return c.exec.Set(ctx, t)
	}
	return st, err
}

func (c tcpControl) Split(ctx context.Context, t relay.Target, percent int) (relay.Status, error) {
	st, err := c.c.Split(ctx, t, percent)
	if c.fallback(ctx, "split", err) {
		return c.exec.Split(ctx, t, percent)
	}
	return st, err
}

func (c tcpControl) WaitDrained(ctx context.Context, name string, timeout time.Duration) (relay.WaitResult, error) {
	w, err := c.c.WaitDrained(ctx, name, timeout)
	if c.fallback(ctx, "wait-drained", err) {
		return c.exec.WaitDrained(ctx, name, timeout)
	}
	return w, err
}

func (c tcpControl) Forget(ctx context.Context, name string) error {
	_, err := c.c.Forget(ctx, name)
	if c.fallback(ctx, "forget", err) {
		return c.exec.Forget(ctx, name)
	}
	return err
}

// execControl runs `baton relay ctl ...` in the relay container. Going
// through docker exec needs no network path to the relay and no token:
// whoever may exec into the relay may control it.
type execControl struct {
	eng       Engine
	container string
}

func (c *execControl) Status(ctx context.Context) (relay.Status, error) {
	var st relay.Status
	err := c.run(ctx, &st, "status")
	return st, err
}

func (c *execControl) Set(ctx context.Context, t relay.Target) (relay.Status, error) {
	args := []string{"set", "--name", t.Name}
	for _, a := range t.Addrs {
		args = append(args, "--addr", a)
	}
	var st relay.Status
	err := c.run(ctx, &st, args...)
	return st, err
}

func (c *execControl) Split(ctx context.Context, t relay.Target, percent int) (relay.Status, error) {
	args := []string{"split", "--name", t.Name, "--percent", strconv.Itoa(percent)}
	for _, a := range t.Addrs {
		args = append(args, "--addr", a)
	}
	var st relay.Status
	err := c.run(ctx, &st, args...)
	return st, err
}

func (c *execControl) WaitDrained(ctx context.Context, name string, timeout time.Duration) (relay.WaitResult, error) {
	var w relay.WaitResult
	err := c.run(ctx, &w, "wait-drained", "--name", name, "--timeout", timeout.String())
	if _, notDrained := err.(notDrainedError); notDrained {
		w.Drained = false
		return w, nil
	}
	return w, err
}

func (c *execControl) Forget(ctx context.Context, name string) error {
	var st relay.Status
	return c.run(ctx, &st, "forget", "--name", name)
}

// notDrainedError is wait-drained's exit code 1: an answer, not a failure.
type notDrainedError struct{}

func (notDrainedError) Error() string { return "not drained" }

func (c *execControl) run(ctx context.Context, out any, args ...string) error {
	argv := append([]string{"/baton", "relay", "ctl"}, args...)
	argv = append(argv, "--control", relayControl)
	res, err := c.eng.Exec(ctx, c.container, argv)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		var e struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if jerr := json.Unmarshal([]byte(res.Stdout), &e); jerr == nil && e.Error != "" {
			return &relay.RemoteError{Code: e.Code, Message: e.Error}
		}
		if res.ExitCode == 1 && args[0] == "wait-drained" {
			// The answer (with its counts) is on stdout all the same; a
			// relay of an earlier version printed none, so it is optional.
			_ = json.Unmarshal([]byte(res.Stdout), out)
			return notDrainedError{}
		}
		return fmt.Errorf("relay %s: ctl %s exited %d: %s", c.container, args[0], res.ExitCode, lastLine([]byte(res.Stderr+res.Stdout)))
	}
	if err := json.Unmarshal([]byte(res.Stdout), out); err != nil {
		return fmt.Errorf("relay %s: ctl %s answer: %w", c.container, args[0], err)
	}
	return nil
}
