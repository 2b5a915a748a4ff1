// Package testenv starts the real parts baton's integration tests, demo and
// benchmark run against: the Docker Engine, a registry, nginx on the host and
// in a container, and images of the demo app built FROM scratch. Everything it
// creates is labelled baton.test=1 and removed in a cleanup.
//
// Its functions take a TB, the subset of testing.TB they use, so a command
// (the demo, the benchmark) can call them with an Env instead of a *testing.T.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
)

// TB is the part of testing.TB that testenv uses. *testing.T, *testing.B and
// *Env satisfy it. Like testing.TB, Fatalf must not return: it ends the
// calling goroutine.
type TB interface {
	Helper()
	Name() string
	Context() context.Context
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Env is a TB for commands. Helpers that fail call Fatalf, which records the
// error and ends the goroutine, so call them inside Run, which turns that into
// a returned error. Close runs the registered cleanups, last first.
type Env struct {
	ctx  context.Context
	name string
	out  io.Writer

	mu       sync.Mutex
	cleanups []func()
	errs     []error
}

// NewEnv returns an Env whose Context is ctx and whose Logf writes lines to
// out (io.Discard when nil).
func NewEnv(ctx context.Context, name string, out io.Writer) *Env {
	if out == nil {
		out = io.Discard
	}
	return &Env{ctx: ctx, name: name, out: out}
}

// Helper does nothing: there is no test log to attribute lines in.
func (e *Env) Helper() {}

// Name returns the name given to NewEnv; testenv uses it in object names.
func (e *Env) Name() string { return e.name }

// Context returns the context given to NewEnv.
func (e *Env) Context() context.Context { return e.ctx }

// Logf writes one line to the Env's output.
func (e *Env) Logf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := fmt.Fprintf(e.out, format+"\n", args...); err != nil {
		e.errs = append(e.errs, fmt.Errorf("writing log: %w", err))
	}
}

// Errorf records a failure and lets the caller go on.
func (e *Env) Errorf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, fmt.Errorf(format, args...))
}

// Fatalf records a failure and ends the calling goroutine, as testing.T does;
// Run and Close contain it. Called on a goroutine that neither runs, it ends
// that goroutine (on main's, the program).
func (e *Env) Fatalf(format string, args ...any) {
	e.Errorf(format, args...)
	runtime.Goexit()
}

// Cleanup registers f to run at Close, after those registered later.
func (e *Env) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

// TempDir creates a directory removed at Close.
func (e *Env) TempDir() string {
	dir, err := os.MkdirTemp("", "baton-env-*")
	if err != nil {
		e.Fatalf("temp dir: %v", err)
	}
	e.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			e.Errorf("removing temp dir %s: %v", dir, err)
		}
	})
	return dir
}

// Run calls fn with the Env on a goroutine of its own and waits for it. It
// returns the failures recorded while fn ran, including the one that ended
// it through Fatalf.
func (e *Env) Run(fn func(t TB)) error {
	e.mu.Lock()
	before := len(e.errs)
	e.mu.Unlock()
	e.contain(func() { fn(e) })
	e.mu.Lock()
	defer e.mu.Unlock()
	return errors.Join(e.errs[before:]...)
}

// Err returns every failure recorded so far.
func (e *Env) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return errors.Join(e.errs...)
}

// Close runs the cleanups, last registered first, each contained so that one
// that calls Fatalf does not stop the others, and returns every failure
// recorded during the Env's life.
func (e *Env) Close() error {
	for {
		e.mu.Lock()
		n := len(e.cleanups)
		if n == 0 {
			e.mu.Unlock()
			break
		}
		f := e.cleanups[n-1]
		e.cleanups = e.cleanups[:n-1]
		e.mu.Unlock()
		e.contain(f)
	}
	return e.Err()
}

// contain runs f on its own goroutine so that runtime.Goexit from Fatalf
// ends only f.
func (e *Env) contain(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}
