package deploy

import "time"

// Event is one step of progress, shown on stderr or as a JSON line.
type Event struct {
	Time      time.Time     `json:"time"`
	Service   string        `json:"service"`
	Host      string        `json:"host,omitempty"` // the engine, in a rollout across hosts
	Phase     Phase         `json:"phase"`
	Container string        `json:"container,omitempty"`
	Image     string        `json:"image,omitempty"`
	Message   string        `json:"message"`
	Elapsed   time.Duration `json:"elapsed_ns,omitempty"`
	Warning   bool          `json:"warning,omitempty"`
	// Progress marks a repeated status line (a health wait ticking) that a
	// terminal may overwrite in place.
	Progress bool `json:"progress,omitempty"`
}

// Reporter receives progress events. It must not block for long.
type Reporter interface {
	Event(Event)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(Event)

// Event calls f.
func (f ReporterFunc) Event(e Event) { f(e) }
