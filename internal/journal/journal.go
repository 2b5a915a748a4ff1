// Package journal is baton's deploy history: one JSON line per finished
// deploy, appended to a file in the state directory by every baton process
// (CLI, watch, serve), kept across restarts and read by baton history.
package journal

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/baton-sh/baton/internal/deploy"
	"github.com/baton-sh/baton/internal/redact"
)

// FileName is the journal's name inside the state directory.
const FileName = "journal.jsonl"

// maxLine bounds one record when reading, so a damaged file cannot make a
// reader allocate without limit.
const maxLine = 1 << 20

// Entry is one deploy as the journal records it.
type Entry struct {
	ID         string        `json:"id"`                 // the deploy's journal id (for serve/watch: the id of the run)
	Requests   []string      `json:"requests,omitempty"` // webhook/watch request ids this deploy served (coalesced ones included)
	Target     string        `json:"target"`
	Service    string        `json:"service,omitempty"`
	Container  string        `json:"container,omitempty"`
	Trigger    string        `json:"trigger"`
	Who        string        `json:"who,omitempty"`
	Host       string        `json:"host,omitempty"`
	PID        int           `json:"pid,omitempty"`
	Outcome    string        `json:"outcome"` // deployed, up-to-date, failed
	ExitCode   int           `json:"exit_code"`
	OldServing bool          `json:"old_serving"`
	OldImage   string        `json:"old_image,omitempty"`
	OldImageID string        `json:"old_image_id,omitempty"`
	NewImage   string        `json:"new_image,omitempty"`
	NewImageID string        `json:"new_image_id,omitempty"`
	Traffic    string        `json:"traffic,omitempty"`
	DeployID   string        `json:"deploy_id,omitempty"`
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at"`
	Duration   time.Duration `json:"duration_ns"`
	// Waited is the part of Duration spent before the deploy changed
	// anything: finding the container, waiting for the service's lock and
	// converging leftovers (the resolve phase).
	Waited    time.Duration `json:"waited_ns,omitempty"`
	Error     string        `json:"error,omitempty"`
	Recovered string        `json:"recovered,omitempty"`
	// Drain is what the drain of the old container waited for and cut.
	Drain *deploy.DrainReport `json:"drain,omitempty"`
}

// FromResult makes the journal entry of a finished deploy. err is the
// deploy's error when the caller has it; without it (OnFinish sees only the
// Result) the exit code is the one the Result carries.
func FromResult(res *deploy.Result, err error, id string, requests []string) Entry {
	e := Entry{
		ID: id, Requests: requests, Target: res.Target, Service: res.Service, Container: res.Container,
		Trigger: res.Trigger, Who: res.Who, PID: os.Getpid(), Outcome: string(res.Outcome),
		ExitCode: deploy.ExitCode(err), OldServing: res.OldServing,
		OldImage: res.OldImage, OldImageID: res.OldImageID, NewImage: res.NewImage, NewImageID: res.NewImageID,
		Traffic: res.Traffic, DeployID: res.DeployID, StartedAt: res.StartedAt, Duration: res.Duration,
		Error: res.Error, Recovered: res.Recovered, Drain: res.Drain,
	}
	if e.Outcome == "" {
		e.Outcome = string(deploy.OutcomeFailed)
	}
	if err != nil && e.Error == "" {
		e.Error = err.Error()
	}
	if err == nil {
		e.ExitCode = res.ExitCode
	}
	if e.StartedAt.IsZero() {
		e.StartedAt = time.Now().Add(-e.Duration)
	}
	e.FinishedAt = e.StartedAt.Add(e.Duration)
	for _, p := range res.Phases {
		if p.Phase == deploy.PhaseResolve {
			e.Waited = p.Duration
		}
	}
	if h, herr := os.Hostname(); herr == nil {
		e.Host = h
	}
	return e.redacted()
}

// redacted masks credentials in URLs inside the free-text fields: an error
// can quote a URL that carries a token, and the journal, notifications and
// hooks are built from the entry.
func (e Entry) redacted() Entry {
	e.Error, e.Recovered, e.Who = redact.Text(e.Error), redact.Text(e.Recovered), redact.Text(e.Who)
	return e
}

// NewID returns a random id for an entry.
func NewID() string {
	var b [8]byte
	// crypto/rand.Read never returns an error (it crashes the program instead).
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Journal is the history file of one state directory.
type Journal struct {
	path string
}

// Open returns the journal in state directory dir (the file is created by
// the first Append).
func Open(dir string) *Journal {
	return &Journal{path: filepath.Join(dir, FileName)}
}

// Path is the journal file's location.
func (j *Journal) Path() string { return j.path }

// Append adds e as one line. Several processes append to the same file: an
// exclusive flock around a single O_APPEND write keeps records whole, and the
// write is synced before Append returns so a deploy that finished is on disk.
func (j *Journal) Append(e Entry) error {
	line, err := json.Marshal(e.redacted())
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	line = append(line, '\n')
	f, err := os.OpenFile(j.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	defer f.Close()
	// A journal an earlier version made world-readable is tightened too.
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(fi.Mode().Perm() &^ 0o077); err != nil {
			return fmt.Errorf("journal %s: %w", j.path, err)
		}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("journal %s: lock: %w", j.path, err)
	}
	defer func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN) }()
	// A writer that died mid-record (power loss) leaves a line without its
	// newline; start on a fresh line so this record stays readable.
	if torn, err := endsTorn(j.path); err != nil {
		return err
	} else if torn {
		line = append([]byte{'\n'}, line...)
	}
	if _, err := f.Write(line); err != nil {
		return fmt.Errorf("journal %s: write: %w", j.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("journal %s: sync: %w", j.path, err)
	}
	return nil
}

// endsTorn reports whether the file is non-empty and does not end in a newline.
func endsTorn(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("journal %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false, err
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], st.Size()-1); err != nil {
		return false, fmt.Errorf("journal %s: %w", path, err)
	}
	return b[0] != '\n', nil
}

// Filter selects entries. The zero Filter selects all of them.
type Filter struct {
	Target string // matches the target as given, the service or the container name
	Limit  int    // keep only the newest Limit entries (0: all)
	ID     string // an entry id or a request id it served
}

func (f Filter) match(e Entry) bool {
	if f.Target != "" && e.Target != f.Target && e.Service != f.Target && e.Container != f.Target {
		return false
	}
	if f.ID != "" && e.ID != f.ID {
		found := false
		for _, r := range e.Requests {
			found = found || r == f.ID
		}
		if !found {
			return false
		}
	}
	return true
}

// Read returns the entries f selects, oldest first. A missing journal is
// empty. Lines that do not parse (a torn write) are skipped and counted in
// skipped, so history still shows everything else.
func (j *Journal) Read(f Filter) (entries []Entry, skipped int, err error) {
	file, err := os.Open(j.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("journal %s: %w", j.path, err)
	}
	defer file.Close()
	// A shared lock: no append is half-written while we read.
	if err := unix.Flock(int(file.Fd()), unix.LOCK_SH); err != nil {
		return nil, 0, fmt.Errorf("journal %s: lock: %w", j.path, err)
	}
	defer func() { _ = unix.Flock(int(file.Fd()), unix.LOCK_UN) }()
	entries, skipped, err = parse(file, f)
	if err != nil {
		return nil, 0, fmt.Errorf("journal %s: %w", j.path, err)
	}
	return entries, skipped, nil
}

func parse(r io.Reader, f Filter) ([]Entry, int, error) {
	var out []Entry
	skipped := 0
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, tooLong, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, err
		}
		line = bytes.TrimSpace(line)
		if tooLong {
			skipped++
		} else if len(line) > 0 {
			var e Entry
			if json.Unmarshal(line, &e) != nil {
				skipped++
			} else if f.match(e) {
				out = append(out, e)
				if f.Limit > 0 && len(out) > 2*f.Limit {
					out = append(out[:0], out[len(out)-f.Limit:]...)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, skipped, nil
}

// readLine reads one line of at most maxLine bytes; a longer one is consumed
// and reported as tooLong.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(line)+len(chunk) > maxLine {
			tooLong = true
			line = line[:0]
		} else if !tooLong {
			line = append(line, chunk...)
		}
		if err != nil || !isPrefix {
			return line, tooLong, err
		}
	}
}
