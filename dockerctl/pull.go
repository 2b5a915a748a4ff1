package dockerctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"
)

// PullProgress says where pull progress goes. With a terminal it is drawn
// the way `docker pull` draws it; otherwise one line per layer event; with a
// nil Out nothing is shown.
type PullProgress struct {
	Out        io.Writer
	TerminalFd uintptr
	IsTerminal bool
}

// TerminalProgress shows progress on f, as a terminal if f is one.
func TerminalProgress(f *os.File) PullProgress {
	return PullProgress{Out: f, TerminalFd: f.Fd(), IsTerminal: isTerminal(f)}
}

// PullImage pulls ref with the docker CLI's credentials for its registry. The
// engine reports most pull failures (unknown tag, registry down, denied)
// inside the progress stream rather than as an HTTP error, so the stream is
// always read to the end and checked.
func (c *Client) PullImage(ctx context.Context, ref string, p PullProgress) error {
	stderr := p.Out
	if stderr == nil {
		stderr = io.Discard
	}
	auth, err := RegistryAuth(ref, stderr)
	if err != nil {
		return err
	}
	rc, err := c.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("pulling %s: %w", ref, err)
	}
	defer rc.Close()
	if p.Out != nil {
		if err := jsonmessage.DisplayJSONMessagesStream(rc, p.Out, p.TerminalFd, p.IsTerminal, nil); err != nil {
			return fmt.Errorf("pulling %s: %w", ref, err)
		}
		return nil
	}
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("pulling %s: reading progress: %w", ref, err)
		}
		if m.Error != nil {
			return fmt.Errorf("pulling %s: %s", ref, m.Error.Message)
		}
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
