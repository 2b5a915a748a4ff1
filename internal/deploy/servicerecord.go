package deploy

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// ServiceRecord is what baton keeps about a service it deployed, in the
// root-owned state directory: the container it created and the settings
// the operator gave. Labels on the container mirror it for people; a
// privileged action (running the reload command, repairing traffic,
// rolling back to an image) takes its facts from here, never from a label.
type ServiceRecord struct {
	Service         Service           `json:"service"`
	ContainerID     string            `json:"container_id"` // the container that serves, as baton left it
	DeployID        string            `json:"deploy_id,omitempty"`
	Image           string            `json:"image,omitempty"`
	ImageID         string            `json:"image_id,omitempty"`
	PreviousImage   string            `json:"previous_image,omitempty"`
	PreviousImageID string            `json:"previous_image_id,omitempty"`
	Flags           map[string]string `json:"flags,omitempty"` // settings given as flags, kept for later deploys
	UpdatedAt       time.Time         `json:"updated_at"`
}

func (d *Deployer) readService(key string) (ServiceRecord, bool, error) {
	var rec ServiceRecord
	found, err := d.State.ReadService(key, &rec)
	if found && rec.Service.Key != key {
		// Two keys mapping to one file name: not this service's record.
		return ServiceRecord{}, false, nil
	}
	return rec, found, err
}

// serviceKeys lists the services the state directory knows: those baton
// deployed, and those with a deploy in progress.
func (d *Deployer) serviceKeys() (map[string]Service, error) {
	out := map[string]Service{}
	for _, sub := range []string{"services", "deploys"} {
		files, err := d.State.RecordFiles(sub)
		if err != nil {
			return nil, err
		}
		for _, data := range files {
			var rec struct {
				Service Service `json:"service"`
			}
			if json.Unmarshal(data, &rec) == nil && rec.Service.Key != "" {
				out[rec.Service.Key] = rec.Service
			}
		}
	}
	return out, nil
}

// resolveSettings works out the settings of a deploy of svc, whose serving
// container is c, with flags given now.
func (d *Deployer) resolveSettings(ctx context.Context, svc Service, c container.InspectResponse, flags map[string]string) (Resolved, error) {
	return d.resolveSettingsOutvoting(ctx, svc, c, flags, nil)
}

// resolveSettingsOutvoting is resolveSettings with flags that only outvote
// command labels (see Sources.Outvoting).
func (d *Deployer) resolveSettingsOutvoting(ctx context.Context, svc Service, c container.InspectResponse, flags, outvoting map[string]string) (Resolved, error) {
	rec, _, err := d.readService(svc.Key)
	if err != nil {
		return Resolved{}, err
	}
	imgLabels, err := ImageLabels(ctx, d.Engine, c.Image)
	if err != nil {
		return Resolved{}, err
	}
	var labels map[string]string
	if c.Config != nil {
		labels = c.Config.Labels
	}
	res, err := d.Policy.Resolve(Sources{Flags: flags, Recorded: rec.Flags, Labels: labels, ImageLabels: imgLabels, Outvoting: outvoting})
	if err != nil {
		return res, err
	}
	if _, asked := flags["kernel-path"]; d.Remote && res.Settings.KernelPath && !asked && rec.Flags["kernel-path"] == "" {
		// The configuration file's kernel path is for services whose
		// engine runs here; one on another machine keeps the relay.
		res.Settings.KernelPath = false
	}
	// On an engine on another machine the file is there, written through
	// the nginx container (the lexical check above still applies).
	if res.Settings.NginxUpstream != "" && (!d.Remote || d.NginxHere) {
		if err := CheckUpstreamFS(res.Settings.NginxUpstream); err != nil {
			return res, err
		}
	}
	return res, nil
}

// recordService writes what a finished deploy (or one that found the
// service up to date) leaves serving.
func (d *Deployer) recordService(svc Service, c container.InspectResponse, deployID string, sticky map[string]string, prevImage, prevImageID string) error {
	old, _, _ := d.readService(svc.Key)
	rec := ServiceRecord{
		Service: svc, ContainerID: c.ID, DeployID: deployID,
		PreviousImage: prevImage, PreviousImageID: prevImageID,
		Flags: maps.Clone(sticky), UpdatedAt: time.Now().UTC(),
	}
	if c.Config != nil {
		rec.Image = c.Config.Image
	}
	rec.ImageID = c.Image
	if prevImageID == "" && old.ContainerID == c.ID {
		rec.PreviousImage, rec.PreviousImageID, rec.DeployID = old.PreviousImage, old.PreviousImageID, old.DeployID
	}
	return d.State.WriteService(svc.Key, rec)
}

// resolveSettings sets f's settings from the flags, the service record, the
// configuration file and the operator's labels; the ones the service was
// deployed with (the same without the flags given now); and says which of
// the image's labels it ignored.
func (r *run) resolveSettings(ctx context.Context, f *Facts) error {
	res, err := r.d.resolveSettings(ctx, r.svc, f.Old, r.req.Flags)
	if err != nil {
		return err
	}
	// The flags given now outvote an old command label here too, without
	// being applied.
	recorded, err := r.d.resolveSettingsOutvoting(ctx, r.svc, f.Old, nil, r.req.Flags)
	if err != nil {
		return err
	}
	f.Settings, f.Recorded = res.Settings, recorded.Settings
	if f.Settings.Port == 0 {
		f.Settings.Port = derivePort(f.Old)
	}
	if f.Recorded.Port == 0 {
		f.Recorded.Port = derivePort(f.Old)
	}
	f.OwnLabels, f.IgnoredLabels, f.Sticky = res.own, res.Ignored, res.Sticky
	if len(res.Ignored) > 0 {
		r.event(PhaseResolve, r.svc.Name, "ignoring labels that image %s carries itself (an image's labels are never settings): %s", shortID(f.Old.Image), strings.Join(res.Ignored, " "))
	}
	return nil
}

// recordFinished records the service after a deploy (or a recovery) made
// rec.NewID its serving container.
func (r *run) recordFinished(ctx context.Context) {
	c, err := r.d.Engine.ContainerInspect(ctx, r.rec.NewID)
	if err != nil {
		r.warn("recording %s in the state directory: %v", r.svc.Name, err)
		return
	}
	// baton set these two on the container it created, over any image label.
	prev, prevID := c.Config.Labels[LabelPreviousImage], c.Config.Labels[LabelPreviousImageID]
	if err := r.d.recordService(r.svc, c, r.rec.DeployID, r.rec.Flags, prev, prevID); err != nil {
		r.warn("recording %s in the state directory: %v", r.svc.Name, err)
	}
}

// recordServing records the container that serves now (a service found up
// to date, or one whose traffic a deploy just set up), so the flags given
// now hold for later deploys and status may repair its traffic even if the
// deploy goes on to fail.
func (r *run) recordServing() {
	if err := r.d.recordService(r.svc, r.facts.Old, "", r.facts.Sticky, "", ""); err != nil {
		r.warn("recording %s in the state directory: %v", r.svc.Name, err)
	}
}

// previousImage is the image a rollback goes back to: the service record's
// when it names this container, else the operator's labels (a container an
// earlier version deployed), never the image's own labels.
func (d *Deployer) previousImage(ctx context.Context, svc Service, c container.InspectResponse) (ref, id string, err error) {
	rec, ok, err := d.readService(svc.Key)
	if err != nil {
		return "", "", err
	}
	if ok && rec.ContainerID == c.ID && rec.PreviousImageID != "" {
		return rec.PreviousImage, rec.PreviousImageID, nil
	}
	own, _, err := ContainerOwnLabels(ctx, d.Engine, c)
	if err != nil {
		return "", "", err
	}
	return own[LabelPreviousImage], own[LabelPreviousImageID], nil
}
