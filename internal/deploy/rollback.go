package deploy

import (
	"context"

	"github.com/docker/docker/errdefs"
)

// Rollback redeploys the image the container ran before baton's last deploy
// of it, the same zero-downtime way. The exact previous image is used when it
// is still on the host, even if its tag has moved since.
func (d *Deployer) Rollback(ctx context.Context, req Request) (*Result, error) {
	c, err := inspectTarget(ctx, d.Engine, req.Target)
	if err == nil {
		err = notATask(c)
	}
	if err != nil {
		return &Result{Outcome: OutcomeFailed, Error: err.Error()}, err
	}
	svc := ServiceOf(c)
	prevRef, prevID, err := d.previousImage(ctx, svc, c)
	if err != nil {
		return &Result{Service: svc.Key, Container: svc.Name, Outcome: OutcomeFailed, Error: err.Error()}, err
	}
	if prevID == "" {
		err := classify(ErrInvalid, "container %s has no previous image recorded (baton records it when it deploys; this one was not deployed by baton yet)", svc.Name)
		return &Result{Service: svc.Key, Container: svc.Name, Outcome: OutcomeFailed, Error: err.Error()}, err
	}
	req.Image, req.ImageID = prevRef, ""
	if img, err := d.Engine.ImageInspect(ctx, prevRef); err == nil && img.ID == prevID {
		req.Pull = PullNever // the reference still names the exact previous image
	} else if _, err := d.Engine.ImageInspect(ctx, prevID); err == nil {
		req.ImageID = prevID // the tag moved: pin the image itself
	} else if !errdefs.IsNotFound(err) {
		return &Result{Service: svc.Key, Container: svc.Name, Outcome: OutcomeFailed, Error: err.Error()}, err
	} else {
		req.Pull = PullMissing
		req.expectImageID = prevID
	}
	if req.Trigger == "" {
		req.Trigger = "rollback"
	}
	return d.Deploy(ctx, req)
}
