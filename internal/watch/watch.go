package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/robfig/cron/v3"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/unattended"
)

// Engine is what the watcher needs from the Docker Engine.
type Engine interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
	// DistributionInspect asks the registry, through the daemon (with its
	// insecure-registry and mirror settings), for a tag's manifest digest;
	// no layer is pulled.
	DistributionInspect(ctx context.Context, image, encodedRegistryAuth string) (registry.DistributionInspect, error)
}

// ServiceLister lists Swarm services (the engine, when it is a manager).
type ServiceLister interface {
	ServiceList(ctx context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error)
}

// Queue is where the watcher sends deploys.
type Queue interface {
	Submit(unattended.Job) (unattended.Status, error)
	Status(id string) (unattended.Status, bool)
	Wait(ctx context.Context, id string) (unattended.Status, error)
}

// Metrics counts checks.
type Metrics interface {
	Check(target, result string)
}

// Check results, as metrics and logs name them.
const (
	CheckUnchanged = "unchanged"
	CheckChanged   = "changed"
	CheckError     = "error"
	CheckSkipped   = "skipped"
	CheckCooling   = "cooling" // a new digest younger than its --min-age
)

// errNotWatchable marks a container whose image cannot be watched (an image
// ID or a digest instead of a tag).
var errNotWatchable = errors.New("not watchable")

// Watcher checks opted-in containers on a schedule.
type Watcher struct {
	Engine Engine
	// Auth returns the X-Registry-Auth value for an image reference: the
	// docker CLI's credentials, as a pull uses them.
	Auth     func(ref string) (string, error)
	Queue    Queue
	Select   unattended.Selector
	Schedule cron.Schedule // when containers without a baton.schedule label are checked
	// Immediate checks once at start (an --interval watcher) rather than
	// waiting for the schedule's first time (a --schedule one).
	Immediate bool
	// RetryAfter is how long a digest whose deploy failed is left alone
	// before it is tried again (a new digest is tried at once).
	RetryAfter time.Duration
	Who        string
	Metrics    Metrics // optional
	Log        *slog.Logger
	// MinAge is the cooldown: a new digest is deployed only once it has
	// been seen in the registry for this long (a container's own
	// baton.min-age label overrides it). Seen remembers first sightings;
	// it is required when MinAge or a label asks for a cooldown.
	MinAge time.Duration
	Seen   Seen
	// Now is the clock (time.Now when nil); tests set it.
	Now func() time.Time
	// Services, when set, lists Swarm services: those opted in by their
	// own labels (the service's, set by the operator; never the image's)
	// are checked too, and their deploys go through the swarm path.
	Services ServiceLister

	memo map[string]attempt // by service key
}

// attempt remembers the last digest the watcher queued a deploy for.
type attempt struct {
	digest string
	id     string
}

// Run checks on schedule until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	p := newPlanner(w.Schedule, time.Now(), w.Immediate)
	for {
		wake := p.wake(time.Now())
		timer := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		now := time.Now()
		due, done := p.round(now)
		if _, err := w.pass(ctx, due); err != nil && ctx.Err() == nil {
			w.Log.Warn("watch pass", "error", err)
		}
		done()
	}
}

// Once checks every managed container now, waits for the deploys it queued
// and returns how many failed.
func (w *Watcher) Once(ctx context.Context) (failed int, err error) {
	ids, err := w.pass(ctx, func(string, string) (bool, error) { return true, nil })
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		st, err := w.Queue.Wait(ctx, id)
		if err != nil {
			return failed, err
		}
		if st.State == string(deploy.OutcomeFailed) || st.State == unattended.StateCancelled {
			failed++
		}
	}
	return failed, nil
}

// pass lists the managed containers and checks those due. It returns the
// ids of the deploys it queued.
func (w *Watcher) pass(ctx context.Context, due func(key, spec string) (bool, error)) ([]string, error) {
	if w.memo == nil {
		w.memo = map[string]attempt{}
	}
	list, err := w.Engine.ContainerList(ctx, container.ListOptions{Filters: w.Select.ListFilters()})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	var ids []string
	seen := map[string]bool{}
	for _, s := range list {
		if ctx.Err() != nil {
			break
		}
		c, err := w.Engine.ContainerInspect(ctx, s.ID)
		if err != nil {
			continue // gone since the list
		}
		if _, task := deploy.SwarmTask(c); task {
			continue // Swarm's; its service is checked by passServices
		}
		name := strings.TrimPrefix(c.Name, "/")
		svc := deploy.ServiceOf(c)
		if svc.Name != name || seen[svc.Key] {
			continue // a replacement mid-deploy, or seen already
		}
		seen[svc.Key] = true
		// An image's own labels never opt its containers in.
		own, _, err := deploy.ContainerOwnLabels(ctx, w.Engine, c)
		if err != nil {
			w.Log.Warn("not watching: image labels unreadable", "container", name, "error", err)
			continue
		}
		if err := w.Select.Allows(own); err != nil {
			continue
		}
		isDue, err := due(svc.Key, own[unattended.LabelSchedule])
		if err != nil {
			w.Log.Warn("not watching: bad label", "container", name, "error", fmt.Errorf("label %s: %w", unattended.LabelSchedule, err))
			continue
		}
		if !isDue {
			continue
		}
		minAge := w.MinAge
		if v, ok := own[unattended.LabelMinAge]; ok {
			if minAge, err = ParseMinAge(v); err != nil {
				w.Log.Warn("not watching: bad label", "container", name, "error", fmt.Errorf("label %s: %w", unattended.LabelMinAge, err))
				continue
			}
		}
		if id, ok := w.checkOne(ctx, name, svc.Key, func() (bool, string, string, error) { return w.Changed(ctx, c) }, minAge); ok {
			ids = append(ids, id)
		}
	}
	if w.Services != nil && ctx.Err() == nil {
		ids = append(ids, w.passServices(ctx, due)...)
	}
	return ids, nil
}

// passServices checks the opted-in Swarm services that are due. An engine
// that is no swarm manager has none.
func (w *Watcher) passServices(ctx context.Context, due func(key, spec string) (bool, error)) []string {
	list, err := w.Services.ServiceList(ctx, swarm.ServiceListOptions{Filters: w.Select.ServiceFilters()})
	if err != nil {
		w.Log.Debug("no swarm services watched", "error", err)
		return nil
	}
	var ids []string
	for _, svc := range list {
		name := svc.Spec.Name
		if svc.Spec.TaskTemplate.ContainerSpec == nil || w.Select.Allows(svc.Spec.Labels) != nil {
			continue
		}
		key := "swarm:" + name
		isDue, err := due(key, svc.Spec.Labels[unattended.LabelSchedule])
		if err != nil {
			w.Log.Warn("not watching: bad label", "service", name, "error", fmt.Errorf("label %s: %w", unattended.LabelSchedule, err))
			continue
		}
		if !isDue {
			continue
		}
		minAge := w.MinAge
		if v, ok := svc.Spec.Labels[unattended.LabelMinAge]; ok {
			if minAge, err = ParseMinAge(v); err != nil {
				w.Log.Warn("not watching: bad label", "service", name, "error", fmt.Errorf("label %s: %w", unattended.LabelMinAge, err))
				continue
			}
		}
		if id, ok := w.checkOne(ctx, name, key, func() (bool, string, string, error) { return w.ServiceChanged(ctx, svc) }, minAge); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// ServiceChanged reports whether the registry's digest for the tag a
// service runs differs from the digest its spec is pinned to (docker
// service update and baton pin it), or, for a spec naming a tag only (an
// image on this node), from the digests of this node's image.
func (w *Watcher) ServiceChanged(ctx context.Context, svc swarm.Service) (changed bool, remote, ref string, err error) {
	ref = svc.Spec.TaskTemplate.ContainerSpec.Image
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return false, "", ref, fmt.Errorf("%w: image %q: %v", errNotWatchable, ref, err)
	}
	pinned := ""
	if d, ok := named.(reference.Digested); ok {
		pinned = d.Digest().String()
		tg, tagged := named.(reference.Tagged)
		if !tagged {
			return false, "", ref, fmt.Errorf("%w: pinned to a digest without a tag", errNotWatchable)
		}
		if named, err = reference.WithTag(reference.TrimNamed(named), tg.Tag()); err != nil {
			return false, "", ref, fmt.Errorf("%w: image %q: %v", errNotWatchable, ref, err)
		}
	}
	named = reference.TagNameOnly(named)
	full := named.String()
	ref = reference.FamiliarString(named)
	if remote, err = w.registryDigest(ctx, full, ref); err != nil {
		return false, "", ref, err
	}
	if pinned != "" {
		return pinned != remote, remote, ref, nil
	}
	img, err := w.Engine.ImageInspect(ctx, full)
	if err != nil {
		return false, remote, ref, fmt.Errorf("image %s of service %s: %w", ref, svc.Spec.Name, err)
	}
	return !isImage(img, named.Name(), remote), remote, ref, nil
}

// registryDigest asks the registry for the digest tag full (ref, as the
// user writes it, for messages) names now.
func (w *Watcher) registryDigest(ctx context.Context, full, ref string) (string, error) {
	auth, err := w.Auth(full)
	if err != nil {
		return "", err
	}
	di, err := w.Engine.DistributionInspect(ctx, full, auth)
	if err != nil {
		return "", fmt.Errorf("asking the registry for %s: %w", ref, err)
	}
	remote := di.Descriptor.Digest.String()
	if remote == "" {
		return "", fmt.Errorf("the registry gave no digest for %s", ref)
	}
	return remote, nil
}

// isImage reports whether img is what repository name at digest (the
// registry's manifest or index digest) names. With the containerd image
// store an image's ID is that digest, and it may be all there is: building
// another image under the same tag on this host (then pushing it) leaves
// the image a container runs with no repo digest, and the watcher would
// take the registry's unchanged digest for a new one and deploy. With the
// graphdriver store the ID is the config's digest, which no manifest
// digest equals, so only the repo digests say it.
func isImage(img image.InspectResponse, name, digest string) bool {
	return img.ID == digest || hasRepoDigest(img.RepoDigests, name, digest)
}

// hasRepoDigest reports whether an image's repo digests include repository
// name at digest.
func hasRepoDigest(repoDigests []string, name, digest string) bool {
	for _, rd := range repoDigests {
		n, err := reference.ParseNormalizedNamed(rd)
		if err != nil {
			continue
		}
		if cn, ok := n.(reference.Canonical); ok && n.Name() == name && cn.Digest().String() == digest {
			return true
		}
	}
	return false
}

// checkOne compares the container's tag in the registry with its image and
// queues a deploy when they differ.
func (w *Watcher) checkOne(ctx context.Context, name, key string, check func() (changed bool, remote, ref string, err error), minAge time.Duration) (string, bool) {
	changed, remote, ref, err := check()
	switch {
	case errors.Is(err, errNotWatchable):
		w.count(name, CheckSkipped)
		w.Log.Debug("not watchable", "container", name, "error", err)
		return "", false
	case err != nil:
		w.count(name, CheckError)
		w.Log.Warn("registry check failed", "container", name, "image", ref, "error", err)
		return "", false
	case !changed:
		w.count(name, CheckUnchanged)
		w.Log.Debug("unchanged", "container", name, "image", ref, "digest", remote)
		return "", false
	}
	if minAge > 0 {
		if w.Seen == nil {
			w.count(name, CheckError)
			w.Log.Warn("not deploying: a cooldown is set but nothing records when digests were first seen", "container", name, "image", ref)
			return "", false
		}
		now := w.now()
		first, err := w.Seen.FirstSeen(ctx, ref, remote, now)
		if err != nil {
			w.count(name, CheckError)
			w.Log.Warn("not deploying: cooldown state unreadable", "container", name, "image", ref, "error", err)
			return "", false
		}
		if age := now.Sub(first); age < minAge {
			w.count(name, CheckCooling)
			w.Log.Info("new digest in the registry is cooling down; not deploying it yet", "container", name, "image", ref, "digest", remote,
				"first_seen", first.UTC().Format(time.RFC3339), "min_age", minAge.String(), "deploy_after", first.Add(minAge).UTC().Format(time.RFC3339))
			return "", false
		}
	}
	if last, ok := w.memo[key]; ok && last.digest == remote {
		if st, ok := w.Queue.Status(last.id); ok {
			switch {
			case !st.Done():
				w.count(name, CheckSkipped)
				return "", false // its deploy is queued or running
			case st.State == string(deploy.OutcomeFailed) && time.Since(st.FinishedAt) < w.RetryAfter:
				w.count(name, CheckSkipped)
				w.Log.Debug("not retrying a failed digest yet", "container", name, "image", ref, "digest", remote, "retry_at", st.FinishedAt.Add(w.RetryAfter))
				return "", false
			case st.State != string(deploy.OutcomeFailed) && st.State != unattended.StateCancelled:
				// Deployed (or found up to date) already, yet the image does
				// not carry the digest under this name: nothing more to do
				// for this digest.
				w.count(name, CheckUnchanged)
				return "", false
			}
		}
	}
	w.count(name, CheckChanged)
	st, err := w.Queue.Submit(unattended.Job{Target: name, Trigger: "watch", Who: w.Who})
	if err != nil {
		w.Log.Warn("not deploying", "container", name, "error", err)
		return "", false
	}
	w.memo[key] = attempt{digest: remote, id: st.ID}
	w.Log.Info("new image in the registry; deploy queued", "container", name, "image", ref, "digest", remote, "id", st.ID)
	return st.ID, true
}

// Changed reports whether the registry's digest for the tag that c runs
// differs from the digests its image was pulled or pushed with.
func (w *Watcher) Changed(ctx context.Context, c container.InspectResponse) (changed bool, remote, ref string, err error) {
	ref = c.Config.Image
	if strings.HasPrefix(ref, "sha256:") {
		return false, "", ref, fmt.Errorf("%w: started from an image ID", errNotWatchable)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return false, "", ref, fmt.Errorf("%w: image %q: %v", errNotWatchable, ref, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return false, "", ref, fmt.Errorf("%w: pinned to a digest", errNotWatchable)
	}
	named = reference.TagNameOnly(named)
	full := named.String()
	if remote, err = w.registryDigest(ctx, full, ref); err != nil {
		return false, "", ref, err
	}
	img, err := w.Engine.ImageInspect(ctx, c.Image)
	if err != nil {
		return false, remote, ref, fmt.Errorf("image %s of container %s: %w", c.Image, strings.TrimPrefix(c.Name, "/"), err)
	}
	return !isImage(img, named.Name(), remote), remote, ref, nil
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watcher) count(target, result string) {
	if w.Metrics != nil {
		w.Metrics.Check(target, result)
	}
}
