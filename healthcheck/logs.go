package healthcheck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

const (
	logTailLines = 10
	// logTailBytes caps what is read for the tail, in case the last lines
	// are enormous.
	logTailBytes = 64 << 10
	// logLineMax keeps a single runaway line from swamping the message.
	logLineMax = 300
)

// tailLogs returns the last n lines the container wrote, stdout and stderr
// interleaved as the daemon framed them. Without a TTY the stream is
// multiplexed and must go through stdcopy; with one it is raw.
func tailLogs(ctx context.Context, eng Engine, id string, tty bool, n int) ([]string, error) {
	rc, err := eng.ContainerLogs(ctx, id, container.LogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Tail:       strconv.Itoa(n),
	})
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	r := io.LimitReader(rc, logTailBytes)
	if tty {
		_, err = io.Copy(&buf, r)
	} else {
		_, err = stdcopy.StdCopy(&buf, &buf, r)
	}
	lines := splitLines(buf.String(), n)
	if err != nil {
		return lines, fmt.Errorf("logs: %w", err)
	}
	return lines, nil
}

func splitLines(s string, n int) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, "\r \t")
		if strings.TrimSpace(l) == "" {
			continue
		}
		if len(l) > logLineMax {
			cut := logLineMax
			for cut > 0 && !utf8.RuneStart(l[cut]) {
				cut--
			}
			l = l[:cut] + "…"
		}
		out = append(out, l)
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
