package deploy

import (
	"time"

	"github.com/baton-sh/baton/dockerctl"
)

// Record is what a deploy in progress writes to the state directory at each
// phase boundary. A baton killed mid-deploy leaves it behind; the next run
// reads it to decide whether to roll back (old container never stopped) or
// forward (it did).
type Record struct {
	DeployID  string                        `json:"deploy_id"`
	Service   Service                       `json:"service"`
	Phase     Phase                         `json:"phase"`
	Trigger   string                        `json:"trigger,omitempty"`
	OldID     string                        `json:"old_id"`
	OldName   string                        `json:"old_name"`
	NewID     string                        `json:"new_id,omitempty"`
	NewName   string                        `json:"new_name"`
	OldImage  string                        `json:"old_image"`
	NewImage  string                        `json:"new_image"`
	Settings  Settings                      `json:"settings"`
	Flags     map[string]string             `json:"flags,omitempty"` // settings given as flags, recorded for the service when the deploy finishes
	Isolated  bool                          `json:"isolated"`
	Handover  []dockerctl.NetworkAttachment `json:"handover,omitempty"`
	StartedAt time.Time                     `json:"started_at"`
	// CreateAt is when the create call was about to be sent: recovery
	// waits a moment past it for a create the engine may still finish.
	CreateAt time.Time `json:"create_at,omitzero"`
}

// pastNoReturn reports whether the old container's stop may have begun.
func (rec Record) pastNoReturn() bool {
	switch rec.Phase {
	case PhaseStopOld, PhaseHandover, PhaseFinalize:
		return true
	}
	return false
}
