package deploy

// Labels baton puts on what it creates. Everything baton creates carries
// LabelManaged so that leftovers of an interrupted run can be found and
// converged; app containers also carry their service and deploy identity.
const (
	LabelManaged         = "baton.managed"
	LabelService         = "baton.service"
	LabelRole            = "baton.role" // app or relay
	LabelDeployID        = "baton.deploy-id"
	LabelReplaces        = "baton.replaces" // ID of the container a new one is replacing
	LabelPreviousImage   = "baton.previous-image"
	LabelPreviousImageID = "baton.previous-image-id"
	LabelTest            = "baton.test"

	RoleApp   = "app"
	RoleRelay = "relay"
)

// settingLabelPrefix marks labels that mirror CLI flags (baton.http-probe,
// baton.drain, ...). baton writes the settings a deploy used onto the new
// container, so the next deploy, a rollback or an unattended update behaves
// the same without repeating the flags.
const settingLabelPrefix = "baton."
