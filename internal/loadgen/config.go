// Package loadgen drives HTTP load at one loopback URL and records every
// request, so a test or the benchmark can count failed requests and compare
// latency inside and outside the windows where a deploy swapped containers.
//
// Each client is one goroutine with its own http.Client and Transport that
// keeps one connection alive (MaxIdleConnsPerHost 1), as a browser or a
// service client would. Go's transport behaviour is kept on purpose: when a
// reused keep-alive connection turns out to have been closed by the server
// before it answered, it retries the request once on a new connection if the
// request is idempotent (GET, HEAD, OPTIONS, TRACE) — a POST is not retried
// and counts as failed. So GET failures mean the server broke a request it
// had accepted; POST failures also catch a connection closed under a client
// that was about to reuse it.
package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// Config says what load to generate. Duration or MaxRequests must bound it.
type Config struct {
	URL         string        // target; its host must be loopback (127.0.0.0/8, ::1, localhost)
	Clients     int           // concurrent clients, each with its own connection (default 8)
	Duration    time.Duration // stop starting requests after this long (0: no time bound)
	MaxRequests int           // stop after this many requests in all (0: no count bound)
	// PostRatio is the share of requests sent as POST with a 1 KiB body, the
	// rest being GETs. 0 means the default 0.5; a negative value means GET only.
	PostRatio float64
	// Rate is requests per second per client, at a fixed interval; 0 sends
	// the next request as soon as the last one is done (closed loop).
	Rate    float64
	Timeout time.Duration // per request (default 5s)
	// AllowHosts are IP addresses besides loopback the URL may name: a
	// container's address on a Docker network the caller created, so the
	// benchmark can reach an nginx container without docker-proxy in the
	// path. Never a name: nothing here resolves to somewhere else.
	AllowHosts []string
}

// BodySize is the size of a POST body.
const BodySize = 1024

// ErrUnbounded is returned for a Config with neither Duration nor MaxRequests.
var ErrUnbounded = errors.New("loadgen: set Duration or MaxRequests: load must stop by itself")

// ErrNotLoopback is returned for a URL whose host is not a loopback address.
var ErrNotLoopback = errors.New("loadgen: target is not a loopback address")

func (c Config) withDefaults() (Config, error) {
	if c.Clients <= 0 {
		c.Clients = 8
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	switch {
	case c.PostRatio == 0:
		c.PostRatio = 0.5
	case c.PostRatio < 0:
		c.PostRatio = 0
	case c.PostRatio > 1:
		return c, fmt.Errorf("loadgen: PostRatio %v above 1", c.PostRatio)
	}
	if c.Rate < 0 {
		return c, fmt.Errorf("loadgen: negative Rate %v", c.Rate)
	}
	if c.Duration <= 0 && c.MaxRequests <= 0 {
		return c, ErrUnbounded
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return c, fmt.Errorf("loadgen: URL %q: %w", c.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return c, fmt.Errorf("loadgen: URL %q: scheme must be http or https", c.URL)
	}
	if !isLoopback(u.Hostname()) && !allowed(u.Hostname(), c.AllowHosts) {
		return c, fmt.Errorf("%w: %q", ErrNotLoopback, c.URL)
	}
	return c, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// allowed reports whether host is an IP address listed in allow.
func allowed(host string, allow []string) bool {
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, a := range allow {
		if aip := net.ParseIP(a); aip != nil && aip.Equal(ip) {
			return true
		}
	}
	return false
}
