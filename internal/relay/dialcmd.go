package relay

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/urfave/cli/v2"
)

// DialConnected is the byte `relay dial` writes on stdout once it has
// connected: the caller reads it before anything else, so a connection
// refused or timed out is told from one the peer accepted, on the one
// stream whose order is kept (stdout and stderr are separate pipes).
const DialConnected = 0

// dialCommand is `relay dial ADDR`: connect to ADDR and copy stdin to it
// and it to stdout. baton runs it with docker exec in a service's relay
// container when the engine is on another machine, so its probes, warm-up
// requests and relay control reach the service's containers from where
// they run (see dockerctl.Client.DialVia).
func dialCommand() *cli.Command {
	return &cli.Command{
		Name:      "dial",
		Usage:     "connect to ADDR (host:port) and copy stdin to it and it to stdout",
		ArgsUsage: "ADDR",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Second, Usage: "how long the connect may take"},
		},
		Action: func(cCtx *cli.Context) error {
			if cCtx.NArg() != 1 {
				return cli.Exit("relay dial: want one ADDR (host:port)", exitError)
			}
			addr := cCtx.Args().First()
			d := net.Dialer{Timeout: cCtx.Duration("timeout")}
			conn, err := d.DialContext(cCtx.Context, "tcp", addr)
			if err != nil {
				return cli.Exit(fmt.Sprintf("relay dial %s: %v", addr, err), 1)
			}
			defer conn.Close()
			out := cCtx.App.Writer
			if _, err := out.Write([]byte{DialConnected}); err != nil {
				return cli.Exit(fmt.Sprintf("relay dial %s: writing stdout: %v", addr, err), exitError)
			}
			in := cCtx.App.Reader
			if in == nil {
				in = os.Stdin
			}
			go func() {
				// The caller's end of stdin ends our writing half; the
				// peer's answer may still be coming.
				_, _ = io.Copy(conn, in)
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}()
			if _, err := io.Copy(out, conn); err != nil {
				return cli.Exit(fmt.Sprintf("relay dial %s: %v", addr, err), 1)
			}
			return nil
		},
	}
}
