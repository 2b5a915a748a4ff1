package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The modes the benchmark knows, in the order it runs them by default.
const (
	ModeRelayHost       = "relay-host"            // baton's relay, nginx on the host
	ModeKernelPath      = "kernel-path"           // relay-host with --kernel-path: the kernel carries traffic between deploys
	ModeRelayContainer  = "relay-container"       // baton's relay, nginx in a container
	ModeKernelContainer = "kernel-path-container" // relay-container with --kernel-path: the kernel of nginx's namespace carries traffic between deploys
	ModeNginxReload     = "nginx-reload"          // baton rewrites the upstream file and reloads nginx
	ModeNone            = "none"                  // baton moves the published port; nginx is not told
	ModeNaive           = "naive"                 // no baton: docker stop, rm, run
)

// Modes returns every mode, in the default order.
func Modes() []string {
	return []string{ModeRelayHost, ModeKernelPath, ModeRelayContainer, ModeKernelContainer, ModeNginxReload, ModeNone, ModeNaive}
}

// Defaults of Config's zero values.
const (
	DefaultDeploys = 20
	DefaultClients = 8
	DefaultRate    = 50.0
	DefaultWarmup  = time.Second
)

// ClosedLoop as Config.Rate makes each client send its next request as soon
// as the last one is done.
const ClosedLoop = -1.0

// Config says what the benchmark measures.
type Config struct {
	Modes   []string // default Modes()
	Deploys int      // measured deploys per mode (default DefaultDeploys)
	Clients int      // concurrent load clients, each with one keep-alive connection (default DefaultClients)
	// Rate is requests per second per client (0: DefaultRate; ClosedLoop or
	// any negative value: closed loop).
	Rate float64
	// Warmup is how long the demo app answers 503 after it starts (its
	// WARMUP), the time a real app spends loading (default DefaultWarmup).
	Warmup time.Duration
	Out    io.Writer // progress lines (default: none)
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Modes) == 0 {
		c.Modes = Modes()
	}
	for _, m := range c.Modes {
		if !slices.Contains(Modes(), m) {
			return c, fmt.Errorf("bench: unknown mode %q (known: %s)", m, strings.Join(Modes(), ", "))
		}
	}
	if c.Deploys <= 0 {
		c.Deploys = DefaultDeploys
	}
	if c.Clients <= 0 {
		c.Clients = DefaultClients
	}
	switch {
	case c.Rate == 0:
		c.Rate = DefaultRate
	case c.Rate < 0:
		c.Rate = ClosedLoop
	}
	if c.Warmup <= 0 {
		c.Warmup = DefaultWarmup
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	return c, nil
}

// loadRate is Rate as loadgen takes it (0 is closed loop there).
func (c Config) loadRate() float64 {
	if c.Rate < 0 {
		return 0
	}
	return c.Rate
}

// Time bounds. The load's bound is a safety net, not the plan: the load is
// stopped after the last deploy.
const (
	deployBudget   = 45 * time.Second // per deploy, for the load's bound
	loadCap        = 30 * time.Minute // the load never runs longer
	setupBudget    = 5 * time.Minute  // images, nginx, the app, the set-up deploy
	commandTimeout = 3 * time.Minute  // one baton command
	healthTimeout  = time.Minute      // one container turning healthy
	settle         = time.Second      // between deploys, so load runs outside the swaps too
	windowPad      = 200 * time.Millisecond
)

// loadBound is how long the load may run at most for n deploys.
func loadBound(n int) time.Duration {
	return min(time.Duration(n)*(deployBudget+settle)+time.Minute, loadCap)
}
