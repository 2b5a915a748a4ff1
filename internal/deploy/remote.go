package deploy

import "github.com/baton-sh/baton/healthcheck"

// checkRemote refuses, for an engine on another machine, the settings
// whose work must happen there and that baton cannot do there yet. With
// the engine elsewhere, the containers' addresses are not reachable from
// this process (and may belong to other containers here), so baton never
// dials them directly: probes, warm-up requests and relay control go
// through the service's relay container (docker exec of `baton relay
// dial`), and the upstream file of an nginx container is written through
// that container. Without a relay there is nothing to probe from; an nginx
// on a host, and its reload command, are out of reach of the Docker API.
func checkRemote(remote bool, s Settings) error {
	if !remote {
		return nil
	}
	switch s.TrafficMode() {
	case TrafficRelay:
		if s.NginxContainer == "" {
			return classify(ErrUnsupported, "the engine is on another machine, and --nginx-upstream %s is for an nginx on a host, whose reload command baton cannot run there; run nginx in a container on that engine (--nginx-container NAME)", s.NginxUpstream)
		}
		return nil
	case TrafficNginx:
		return classify(ErrUnsupported, "the engine is on another machine, where baton reaches containers only through its relay: use the relay (drop --relay=false) with --nginx-container NAME")
	}
	var needs []string
	if s.HTTPProbe != "" {
		needs = append(needs, "--http-probe")
	}
	if s.TCPProbe {
		needs = append(needs, "--tcp-probe")
	}
	if s.WarmupRequests > 0 {
		needs = append(needs, "--warmup-requests")
	}
	if len(needs) > 0 {
		return classify(ErrUnsupported, "the engine is on another machine, where baton reaches containers only through a service's relay, and without --nginx-upstream there is none: %s cannot run (use the image's HEALTHCHECK, or the relay with --nginx-container NAME)", joinAnd(needs))
	}
	return nil
}

func joinAnd(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	out := words[0]
	for _, w := range words[1 : len(words)-1] {
		out += ", " + w
	}
	return out + " and " + words[len(words)-1]
}

// checkRemoteFacts is checkRemote, except that the relay with an nginx on
// this machine (a rollout's shared nginx, Deployer.NginxHere) works with an
// engine elsewhere: the upstream file and the reload are local, and the
// relay publishes its port on the host's --relay-address for it.
func checkRemoteFacts(f *Facts) error {
	if f.NginxHere && f.Settings.TrafficMode() == TrafficRelay && f.Settings.NginxContainer == "" {
		return nil
	}
	return checkRemote(f.Remote, f.Settings)
}

// dialer is how this deploy's probes and warm-up requests connect to the
// service's containers: nil (directly) for a local engine.
func (r *run) dialer() healthcheck.Dialer {
	if !r.d.Remote || r.d.Reach == nil {
		return nil
	}
	return r.d.Reach(r.svc)
}

// fromWhere says, for a remote engine, where probes run from.
func (r *run) fromWhere() string {
	if !r.d.Remote {
		return ""
	}
	return " from the service's relay container"
}
