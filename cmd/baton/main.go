// Command baton replaces a running Docker container with one from a new
// image, with zero failed requests.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/baton-sh/baton/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
