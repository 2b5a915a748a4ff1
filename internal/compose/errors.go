package compose

import "github.com/baton-sh/baton/internal/deploy"

var classify = deploy.Classify
