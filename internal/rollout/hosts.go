package rollout

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/baton-sh/baton/internal/deploy"
)

// ParseHosts reads a hosts file: one host a line,
//
//	NAME [relay-address=IP] [docker-host=URL]
//
// NAME is a docker context (or, with docker-host=, a name of the operator's
// choosing for the engine at URL); blank lines and # comments are ignored.
// src names the file in errors.
func ParseHosts(r io.Reader, src string) ([]Host, error) {
	var hosts []Host
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		h := Host{Name: fields[0]}
		if !validName.MatchString(h.Name) {
			return nil, deploy.Classify(deploy.ErrInvalid, "%s:%d: host name %q: want letters, digits and _ . + - (a docker context's name)", src, line, h.Name)
		}
		for _, f := range fields[1:] {
			k, v, ok := strings.Cut(f, "=")
			switch {
			case ok && k == "relay-address":
				if net.ParseIP(v) == nil {
					return nil, deploy.Classify(deploy.ErrInvalid, "%s:%d: relay-address %q is not an IP address", src, line, v)
				}
				h.RelayAddress = v
			case ok && k == "docker-host":
				if !strings.HasPrefix(v, "unix://") && !strings.HasPrefix(v, "tcp://") {
					return nil, deploy.Classify(deploy.ErrInvalid, "%s:%d: docker-host %q: want a unix:// or tcp:// URL (name an ssh:// or TLS engine by its docker context)", src, line, v)
				}
				h.DockerHost = v
			default:
				return nil, deploy.Classify(deploy.ErrInvalid, "%s:%d: %q: want relay-address=IP or docker-host=URL after the host name", src, line, f)
			}
		}
		hosts = append(hosts, h)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hosts file %s: %w", src, err)
	}
	return hosts, nil
}

// ApplyRelayAddresses sets each host's relay address from a
// NAME=IP[,NAME=IP...] list (the --relay-address flag of a rollout).
func ApplyRelayAddresses(hosts []Host, list string) error {
	if list == "" {
		return nil
	}
	for _, pair := range strings.Split(list, ",") {
		name, ip, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || net.ParseIP(ip) == nil {
			return deploy.Classify(deploy.ErrInvalid, "--relay-address %q: across several hosts give HOST=IP for each, comma-separated (or relay-address=IP in the hosts file)", pair)
		}
		found := false
		for i := range hosts {
			if hosts[i].Name == name {
				hosts[i].RelayAddress, found = ip, true
			}
		}
		if !found {
			return deploy.Classify(deploy.ErrInvalid, "--relay-address %s: no host %s in this rollout", pair, name)
		}
	}
	return nil
}
