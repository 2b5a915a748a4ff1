package dockerctl

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// ExecResult is the outcome of a command run in a container.
type ExecResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Exec runs argv in a running container and waits for it. It fails only when
// the command could not be run; a non-zero exit is in ExitCode.
func (c *Client) Exec(ctx context.Context, containerID string, argv []string) (ExecResult, error) {
	var res ExecResult
	created, err := c.ContainerExecCreate(ctx, containerID, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return res, fmt.Errorf("exec %s in %s: %w", strings.Join(argv, " "), containerID, err)
	}
	att, err := c.ContainerExecAttach(ctx, created.ID, container.ExecStartOptions{})
	if err != nil {
		return res, fmt.Errorf("exec %s in %s: %w", strings.Join(argv, " "), containerID, err)
	}
	defer att.Close()
	// Only the tail is kept: a command (a --pre-switch migration) may print
	// without bound, and what failed is said last.
	stdout, stderr := &tailBuffer{max: execOutputMax}, &tailBuffer{max: execOutputMax}
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, att.Reader)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return res, fmt.Errorf("exec %s in %s: reading output: %w", strings.Join(argv, " "), containerID, err)
		}
	case <-ctx.Done():
		return res, fmt.Errorf("exec %s in %s: %w", strings.Join(argv, " "), containerID, ctx.Err())
	}
	insp, err := c.ContainerExecInspect(ctx, created.ID)
	// The output ends when the process closes it, which may come before
	// the engine records its exit: an exec still running has no exit code
	// yet (its 0 would read as success), so look again until it has.
	for err == nil && insp.Running {
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("exec %s in %s: %w", strings.Join(argv, " "), containerID, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		insp, err = c.ContainerExecInspect(ctx, created.ID)
	}
	if err != nil {
		return res, fmt.Errorf("exec %s in %s: %w", strings.Join(argv, " "), containerID, err)
	}
	res.Stdout, res.Stderr, res.ExitCode = stdout.String(), stderr.String(), insp.ExitCode
	return res, nil
}

// execOutputMax bounds each output stream Exec keeps.
const execOutputMax = 1 << 20

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
		t.buf.Reset()
		t.cut = true
	}
	if over := t.buf.Len() + len(p) - t.max; over > 0 {
		t.buf.Next(over)
		t.cut = true
	}
	t.buf.Write(p)
	return n, nil
}

func (t *tailBuffer) String() string {
	if t.cut {
		return "...(cut)\n" + t.buf.String()
	}
	return t.buf.String()
}
