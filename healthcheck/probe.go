package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// probeTimeout bounds one attempt, so a peer that accepts but never answers
// costs one attempt rather than the whole wait.
const probeTimeout = 2 * time.Second

// viaAllowance is what a probe or warm-up request made through dial (a
// docker exec on an engine on another machine, maybe over ssh) may take on
// top of its own timeout to set its connection up. An exec over ssh costs
// an ssh session, a dial-stdio process, an exec in the relay container and
// a process there: about a CPU-second, which on a loaded host took over the
// 5 s this once allowed (TestRolloutOverSSH failed twice on it, at load
// average 16 and 30).
func viaAllowance(dial Dialer) time.Duration {
	if dial == nil {
		return 0
	}
	return 20 * time.Second
}

// bodyExcerpt is how much of a failing response body an error quotes: enough
// for "warming up" or a stack trace's first line, short enough for one line.
const bodyExcerpt = 200

// Probe is one readiness check run from baton's side, as a client would reach
// the container. Check returns nil when healthy, else an error that names
// what it tried and what happened.
type Probe interface {
	Check(ctx context.Context) error
	String() string
}

type httpProbe struct {
	url    string
	client *http.Client
}

// HTTP probes GET http://addr+path; healthy on a 2xx answer within 2s.
// Redirects are followed as net/http does. Each attempt opens a fresh
// connection: a kept-alive one would prove nothing about the listener, and
// the proxy environment is ignored because addr is normally a container IP.
func HTTP(addr, path string) Probe { return HTTPVia(addr, path, nil) }

// Dialer connects to an address on a service's network. Nil dials
// directly; for an engine on another machine it reaches the address from
// where the containers run (dockerctl.Client.DialContainer).
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// HTTPVia is HTTP with its connections made by dial.
func HTTPVia(addr, path string, dial Dialer) Probe {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return &httpProbe{
		url: "http://" + addr + path,
		client: &http.Client{
			Timeout:   probeTimeout + viaAllowance(dial),
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, DialContext: dial},
		},
	}
}

func (p *httpProbe) String() string { return p.url }

func (p *httpProbe) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", p.url, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", p.url, transportError(err, probeTimeout))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return fmt.Errorf("GET %s: %s", p.url, statusDetail(resp))
}

// statusDetail renders a non-2xx answer as "503 Service Unavailable: body"
// with the body cut and folded onto one line.
func statusDetail(resp *http.Response) string {
	b, err := io.ReadAll(io.LimitReader(resp.Body, bodyExcerpt))
	body := oneLine(string(b))
	if err != nil && body == "" {
		body = "(reading body: " + err.Error() + ")"
	}
	if body == "" {
		return resp.Status
	}
	return resp.Status + ": " + body
}

// transportError drops net/http's `Get "url":` prefix (the caller names the
// URL already) and says plainly when the attempt timed out.
func transportError(err error, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("no response within %s: %w", timeout, ue.Err)
		}
		return ue.Err
	}
	return err
}

type tcpProbe struct {
	addr string
	dial Dialer
}

// TCP probes addr; healthy when a TCP connection is accepted within 2s.
func TCP(addr string) Probe { return &tcpProbe{addr: addr} }

// TCPVia is TCP with its connection made by dial.
func TCPVia(addr string, dial Dialer) Probe { return &tcpProbe{addr: addr, dial: dial} }

func (p *tcpProbe) String() string { return "tcp " + p.addr }

func (p *tcpProbe) Check(ctx context.Context) error {
	dial := p.dial
	if dial == nil {
		d := net.Dialer{Timeout: probeTimeout}
		dial = d.DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout+viaAllowance(p.dial))
	defer cancel()
	conn, err := dial(ctx, "tcp", p.addr)
	if err != nil {
		return fmt.Errorf("tcp %s: %w", p.addr, err)
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("tcp %s: close: %w", p.addr, err)
	}
	return nil
}

// oneLine folds runs of whitespace, newlines included, into single spaces.
func oneLine(s string) string {
	return printable(strings.Join(strings.Fields(s), " "), false)
}
