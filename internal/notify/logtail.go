package notify

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// TailLines is how many log lines a notification carries.
const TailLines = 20

// FailureLogTail extracts the log lines a failed deploy's error carries: the
// health check appends the new container's last lines as
// "; logs: a | b | c" (the container itself is gone by then, removed by the
// rollback), and the rollback may add "; NAME keeps serving IMAGE" after them.
func FailureLogTail(errText string) []string {
	_, logs, ok := strings.Cut(errText, "; logs: ")
	if !ok {
		return nil
	}
	if i := strings.LastIndex(logs, "; "); i >= 0 && strings.Contains(logs[i:], " keeps serving") {
		logs = logs[:i]
	}
	var out []string
	for _, l := range strings.Split(logs, " | ") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > TailLines {
		out = out[len(out)-TailLines:]
	}
	return out
}

// LogReader is what ContainerLogTail needs from the engine.
type LogReader interface {
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
}

// ContainerLogTail returns the last n lines a container logged (stdout and
// stderr interleaved).
func ContainerLogTail(ctx context.Context, eng LogReader, id string, n int) ([]string, error) {
	c, err := eng.ContainerInspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	rc, err := eng.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(n)})
	if err != nil {
		return nil, fmt.Errorf("logs of container %s: %w", id, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if c.Config == nil || !c.Config.Tty {
		pr, pw := io.Pipe()
		go func() {
			_, err := stdcopy.StdCopy(pw, pw, io.LimitReader(rc, 1<<20))
			pw.CloseWithError(err)
		}()
		r = pr
	}
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, sc.Err()
}
