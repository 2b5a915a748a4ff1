package deploy

import (
	"errors"
	"fmt"
)

// Sentinels a caller can test with errors.Is to choose an exit code or a
// reaction. Every error a deploy returns wraps one of them or a PhaseError.
var (
	// ErrInvalid: bad input or a precondition not met; nothing was changed.
	ErrInvalid = errors.New("invalid input")
	// ErrNotFound: the target container does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotRunning: the target exists but is not running, so there is
	// nothing serving to replace without downtime.
	ErrNotRunning = errors.New("not running")
	// ErrUnsupported: the container's setup cannot be replaced without downtime.
	ErrUnsupported = errors.New("unsupported")
	// ErrOldStopped: the failure came after the old container was stopped
	// (the point of no return); the service may not be serving.
	ErrOldStopped = errors.New("old container already stopped")
)

// Phase is one step of a deploy. Their order is the deploy's order; stopping
// the old container is the point of no return.
type Phase string

const (
	PhaseResolve  Phase = "resolve"
	PhasePull     Phase = "pull"
	PhaseCreate   Phase = "create"
	PhaseWarm     Phase = "warm"
	PhaseHealthy  Phase = "healthy"
	PhaseSwitch   Phase = "switch"
	PhaseCanary   Phase = "canary" // a share of new connections goes to the new container
	PhaseDrain    Phase = "drain"
	PhaseBake     Phase = "bake" // the old container waits, out of rotation, to be reverted to
	PhaseStopOld  Phase = "stop-old"
	PhaseHandover Phase = "handover"
	PhaseFinalize Phase = "finalize"
	PhaseRecover  Phase = "recover"
)

// PhaseError says in which phase a deploy failed and whether the old
// container still serves.
type PhaseError struct {
	Phase      Phase
	OldServing bool // false once the old container was stopped and could not be brought back
	Err        error
}

func (e *PhaseError) Error() string { return fmt.Sprintf("%s: %v", e.Phase, e.Err) }
func (e *PhaseError) Unwrap() error { return e.Err }

// ExitCode maps a deploy error to the documented exit code:
// 0 deployed or up to date, 1 failed with the old container still serving,
// 2 bad input (nothing changed), 3 failed after the old container stopped.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var pe *PhaseError
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound), errors.Is(err, ErrNotRunning), errors.Is(err, ErrUnsupported):
		return 2
	case errors.Is(err, ErrOldStopped):
		return 3
	case errors.As(err, &pe) && !pe.OldServing:
		return 3
	default:
		return 1
	}
}

// kindError is an error of one of the sentinel kinds whose message does not
// repeat the kind: "no container named web", not "not found: no container...".
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// classify makes an error of kind with a formatted message (which may wrap
// another error with %w).
func classify(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// Classify is classify for other packages: an error of kind (ErrInvalid,
// ErrNotFound, ...) whose message is just the formatted text.
func Classify(kind error, format string, args ...any) error {
	return classify(kind, format, args...)
}
