package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is a server testenv started as a child, in a process group of its
// own so that a kill reaches whatever it forked (nginx's workers).
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been reaped
	err     error         // Wait's result, set before done is closed
}

// startProcess starts name with its output appended to logPath.
func startProcess(logPath, name string, args ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, errors.Join(err, logf.Close()))
	}
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		// The child holds its own copy of the file; ours is only for Start.
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitHTTP waits for url to give a response ok accepts, giving up early if
// the process exits.
func (p *process) waitHTTP(ctx context.Context, url string, timeout time.Duration, ok func(*http.Response) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := waitHTTP(ctx, url, timeout, ok)
	if err != nil && p.exited() {
		return fmt.Errorf("%s exited (%v) before serving; log:\n%s", p.cmd.Path, p.err, tail(p.logPath, 2048))
	}
	return err
}

// stop sends sig and waits up to grace for the process to end, then kills
// its process group. An error says it had to be killed or could not be.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pid %d: signal %v: %w", p.cmd.Process.Pid, sig, err)
	}
	return p.waitOrKill(grace)
}

// waitOrKill waits up to grace for the process to end, then kills its group.
func (p *process) waitOrKill(grace time.Duration) error {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	killErr := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("pid %d: still running %s after being asked to stop, killed (%v)", p.cmd.Process.Pid, grace, killErr)
}

// tail returns up to the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		if _, err := f.Seek(-n, io.SeekEnd); err != nil {
			return fmt.Sprintf("(%v)", err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}
