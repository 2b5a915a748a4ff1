package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"
)

// Exit codes of `relay ctl`: wait-drained exits exitNotDrained when the
// target did not drain in time; any error exits exitError. The JSON on
// stdout says which ({"error":...} on error).
const (
	exitNotDrained = 1
	exitError      = 2
)

const defaultControlSocket = "/state/ctl.sock"

// ctlCallTimeout bounds the ctl ops that return at once.
const ctlCallTimeout = 10 * time.Second

// Command is the hidden `relay` command: `relay serve` runs the relay (in
// its FROM scratch container) and `relay ctl ...` drives it, which baton
// runs with docker exec and whose stdout is one line of JSON.
func Command() *cli.Command {
	return &cli.Command{
		Name:   "relay",
		Usage:  "L4 relay between nginx and the app containers (internal)",
		Hidden: true,
		Subcommands: []*cli.Command{
			serveCommand(),
			ctlCommand(),
			dialCommand(),
		},
	}
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "relay TCP connections to the current target until stopped",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: ":8080", Usage: "TCP address to accept connections on"},
			&cli.StringFlag{Name: "control", Value: defaultControlSocket, Usage: "control unix socket path"},
			&cli.StringFlag{Name: "state", Value: "/state/relay.json", Usage: "state file keeping the current target across restarts"},
			&cli.StringFlag{Name: "control-tcp", Usage: "also serve control on this TCP address; requests must carry the token in $BATON_RELAY_TOKEN"},
			&cli.DurationFlag{Name: "dial-timeout", Value: defaultDialTimeout, Usage: "timeout of one dial to one backend addr"},
			&cli.DurationFlag{Name: "dial-deadline", Value: defaultDialDeadline, Usage: "how long a connection keeps retrying its dial"},
			&cli.DurationFlag{Name: "shutdown-grace", Value: defaultShutdownGrace, Usage: "how long to wait for open connections on stop"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: func(cCtx *cli.Context) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(cCtx.String("log-level"))); err != nil {
				return cli.Exit(fmt.Sprintf("relay serve: --log-level: %v", err), exitError)
			}
			logger := slog.New(slog.NewTextHandler(cCtx.App.ErrWriter, &slog.HandlerOptions{Level: level}))
			err := Serve(cCtx.Context, Config{
				Listen:        cCtx.String("listen"),
				ControlSocket: cCtx.String("control"),
				ControlTCP:    cCtx.String("control-tcp"),
				ControlToken:  os.Getenv("BATON_RELAY_TOKEN"),
				StateFile:     cCtx.String("state"),
				DialTimeout:   cCtx.Duration("dial-timeout"),
				DialDeadline:  cCtx.Duration("dial-deadline"),
				ShutdownGrace: cCtx.Duration("shutdown-grace"),
				Logger:        logger,
			})
			if err != nil {
				return cli.Exit(fmt.Sprintf("relay serve: %v", err), 1)
			}
			return nil
		},
	}
}

func controlFlag() cli.Flag {
	return &cli.StringFlag{Name: "control", Value: defaultControlSocket, Usage: "control unix socket path of the relay"}
}

func ctlCommand() *cli.Command {
	return &cli.Command{
		Name:  "ctl",
		Usage: "control a running relay; prints one line of JSON",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "print the current and draining targets",
				Flags: []cli.Flag{controlFlag()},
				Action: ctlAction(func(ctx context.Context, c *Client, cCtx *cli.Context) (any, error) {
					return c.Status(ctx)
				}),
			},
			{
				Name:  "set",
				Usage: "switch new connections to a target",
				Flags: []cli.Flag{
					controlFlag(),
					&cli.StringFlag{Name: "name", Required: true, Usage: "target (container) name"},
					&cli.StringSliceFlag{Name: "addr", Required: true, Usage: "host:port, tried in order (repeat)"},
				},
				Action: ctlAction(func(ctx context.Context, c *Client, cCtx *cli.Context) (any, error) {
					return c.Set(ctx, Target{Name: cCtx.String("name"), Addrs: cCtx.StringSlice("addr")})
				}),
			},
			{
				Name:  "wait-drained",
				Usage: "wait until a draining target has no open connection (exit 1 if not by --timeout)",
				Flags: []cli.Flag{
					controlFlag(),
					&cli.StringFlag{Name: "name", Required: true, Usage: "draining target name"},
					&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long to wait"},
				},
				Action: ctlAction(func(ctx context.Context, c *Client, cCtx *cli.Context) (any, error) {
					return c.WaitDrained(ctx, cCtx.String("name"), cCtx.Duration("timeout"))
				}),
			},
			{
				Name:  "forget",
				Usage: "stop using a draining target as a fallback and drop it once idle",
				Flags: []cli.Flag{
					controlFlag(),
					&cli.StringFlag{Name: "name", Required: true, Usage: "draining target name"},
				},
				Action: ctlAction(func(ctx context.Context, c *Client, cCtx *cli.Context) (any, error) {
					return c.Forget(ctx, cCtx.String("name"))
				}),
			},
		},
	}
}

type ctlFunc func(ctx context.Context, c *Client, cCtx *cli.Context) (any, error)

// ctlAction runs one control op and prints its JSON response, or
// {"error":...} and a non-zero exit on failure.
func ctlAction(f ctlFunc) cli.ActionFunc {
	return func(cCtx *cli.Context) error {
		timeout := ctlCallTimeout
		if cCtx.Command.Name == "wait-drained" {
			timeout += cCtx.Duration("timeout")
		}
		ctx, cancel := context.WithTimeout(cCtx.Context, timeout)
		defer cancel()

		resp, err := runCtl(ctx, cCtx, f)
		if err != nil {
			e := errorResponse{Error: err.Error(), Code: codeInternal}
			var re *RemoteError
			if errors.As(err, &re) {
				e = errorResponse{Error: re.Message, Code: re.Code}
			}
			if werr := writeJSON(cCtx.App.Writer, e); werr != nil {
				return cli.Exit(fmt.Sprintf("relay ctl %s: %v (and writing stdout: %v)", cCtx.Command.Name, err, werr), exitError)
			}
			return cli.Exit(fmt.Sprintf("relay ctl %s: %v", cCtx.Command.Name, err), exitError)
		}
		if err := writeJSON(cCtx.App.Writer, resp); err != nil {
			return cli.Exit(fmt.Sprintf("relay ctl %s: write stdout: %v", cCtx.Command.Name, err), exitError)
		}
		if w, ok := resp.(WaitResult); ok && !w.Drained {
			return cli.Exit(fmt.Sprintf("relay ctl wait-drained: target %s not drained within %s", cCtx.String("name"), cCtx.Duration("timeout")), exitNotDrained)
		}
		return nil
	}
}

func runCtl(ctx context.Context, cCtx *cli.Context, f ctlFunc) (any, error) {
	c, err := Dial(ctx, cCtx.String("control"))
	if err != nil {
		return nil, err
	}
	resp, err := f(ctx, c, cCtx)
	if cerr := c.Close(); cerr != nil && err == nil {
		return resp, fmt.Errorf("relay control socket %s: close: %w", cCtx.String("control"), cerr)
	}
	return resp, err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
