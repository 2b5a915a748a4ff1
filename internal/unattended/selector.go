package unattended

import (
	"fmt"
	"strconv"

	"github.com/docker/docker/api/types/filters"

	"github.com/baton-sh/baton/internal/deploy"
)

// Labels that opt a container in to unattended deploys. A deploy carries
// them over to the new container like the settings labels (baton.http-probe
// and the like); only baton's per-deploy identity labels are rewritten.
const (
	// LabelEnable=true opts a container in to baton watch and baton serve.
	LabelEnable = "baton.enable"
	// LabelSchedule is a cron expression (or @every 10m) for when baton
	// watch checks this container, instead of the watcher's own schedule.
	LabelSchedule = "baton.schedule"
	// LabelMinAge is the container's own watch cooldown (baton watch
	// --min-age): a new digest is deployed only once watch has seen it in
	// the registry for that long.
	LabelMinAge = "baton.min-age"
	// LabelScope ties a container to the watcher or server started with the
	// same --scope, so several can share a host without overlapping.
	LabelScope = "baton.scope"
)

// Selector says which containers a watcher or server manages.
type Selector struct {
	All   bool   // every container, not only those labelled baton.enable=true
	Scope string // only containers labelled baton.scope=Scope
}

// ListFilters narrows a container list to candidates; Allows decides.
func (s Selector) ListFilters() filters.Args {
	f := filters.NewArgs(filters.Arg("status", "running"))
	if !s.All {
		f.Add("label", LabelEnable)
	}
	if s.Scope != "" {
		f.Add("label", LabelScope+"="+s.Scope)
	}
	return f
}

// ServiceFilters narrows a Swarm service list to candidates (by the
// service's own labels); Allows decides.
func (s Selector) ServiceFilters() filters.Args {
	f := filters.NewArgs()
	if !s.All {
		f.Add("label", LabelEnable)
	}
	if s.Scope != "" {
		f.Add("label", LabelScope+"="+s.Scope)
	}
	return f
}

// Allows returns nil when a container with these labels is managed, else
// why not. baton's relay containers never are, and baton.enable=false opts
// a container out even with --all.
func (s Selector) Allows(labels map[string]string) error {
	if labels[deploy.LabelRole] == deploy.RoleRelay {
		return fmt.Errorf("it is baton's relay")
	}
	if s.Scope != "" && labels[LabelScope] != s.Scope {
		return fmt.Errorf("its label %s is %q, not %q", LabelScope, labels[LabelScope], s.Scope)
	}
	v, set := labels[LabelEnable]
	enabled, err := strconv.ParseBool(v)
	switch {
	case set && err != nil:
		return fmt.Errorf("its label %s=%q is not true or false", LabelEnable, v)
	case set && !enabled:
		return fmt.Errorf("it is labelled %s=false", LabelEnable)
	case !set && !s.All:
		return fmt.Errorf("it is not labelled %s=true", LabelEnable)
	}
	return nil
}
