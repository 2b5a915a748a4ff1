// Command demoapp is the small web app that baton's demo, integration tests
// and benchmark deploy. It is built static so it runs in a FROM scratch image,
// and its failure modes are chosen by environment variables so one binary can
// play a healthy release, a broken one and a slow one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	probe := flag.String("probe", "", "act as a HEALTHCHECK command: GET this URL and exit 0 on 2xx")
	port := flag.Int("port", 0, "listen on this port (overrides LISTEN), as traefik/whoami takes it")
	preSwitch := flag.String("pre-switch", "", "act as a --pre-switch step: append how many requests the app at this base URL has served to "+preSwitchFile+" (which the app serves at /pre-switch)")
	flag.Parse()
	if *preSwitch != "" {
		os.Exit(runPreSwitch(*preSwitch))
	}
	if *port != 0 {
		os.Setenv("LISTEN", fmt.Sprintf(":%d", *port))
	}
	if *probe != "" {
		os.Exit(runProbe(*probe))
	}
	if err := run(); err != nil {
		log.Printf("demoapp: %v", err)
		os.Exit(1)
	}
}

// preSwitchFile is where the -pre-switch step writes, and what GET
// /pre-switch serves: one line per run, with the number of requests the app
// had served then. A step that ran once before traffic moved leaves one
// line saying 0.
const preSwitchFile = "/tmp/pre-switch"

func runPreSwitch(base string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(base + "/served")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	// A FROM scratch image has no /tmp.
	if err := os.MkdirAll("/tmp", 0o1777); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := os.OpenFile(preSwitchFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "served=%s\n", strings.TrimSpace(string(body))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("pre-switch step done: served=%s\n", strings.TrimSpace(string(body)))
	return 0
}

func runProbe(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	fmt.Printf("%d %s\n", resp.StatusCode, body)
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}

type config struct {
	listen         string
	version        string
	mode           string        // normal, never-healthy, crash, unhealthy-after
	warmup         time.Duration // time before /healthz turns 200
	lateListen     bool          // open the port only after warm-up
	stopDelay      time.Duration // extra time spent in SIGTERM handling before closing the listener
	unhealthyAfter time.Duration
	failAfter      time.Duration // FAIL_AFTER: this long after the first request it serves, every answer is 500 (a release that breaks under traffic)
	resetAfter     time.Duration // RESET_AFTER: this long after the first request it serves, every request's connection is reset unanswered while /healthz stays 200 (a release only the relay's reset count catches)
	exitAfter      time.Duration // EXIT_AFTER: this long after the first request it serves, the process exits at once with status 3, requests in flight unanswered (a release that crashes under traffic)
	closeAfter     time.Duration // CLOSE_AFTER: this long after the first request it serves, the app closes its listener and keeps running: dials to it are refused (a release only the relay's dial-error count catches, as long as its health check is not run)
	needs          []string      // host:port peers (a database) that must answer for the app to be healthy
}

func loadConfig() config {
	c := config{
		listen:  env("LISTEN", ":8080"),
		version: env("VERSION", "dev"),
		mode:    env("MODE", "normal"),
	}
	c.warmup = envDuration("WARMUP", 0)
	c.stopDelay = envDuration("STOP_DELAY", 0)
	c.unhealthyAfter = envDuration("UNHEALTHY_AFTER", 0)
	c.failAfter = envDuration("FAIL_AFTER", 0)
	c.resetAfter = envDuration("RESET_AFTER", 0)
	c.exitAfter = envDuration("EXIT_AFTER", 0)
	c.closeAfter = envDuration("CLOSE_AFTER", 0)
	c.lateListen = env("LISTEN_AFTER_WARMUP", "") == "1"
	if n := env("NEEDS", ""); n != "" {
		c.needs = strings.Split(n, ",")
	}
	return c
}

func run() error {
	cfg := loadConfig()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.Printf("demoapp %s starting mode=%s warmup=%s", cfg.version, cfg.mode, cfg.warmup)
	if cfg.mode == "crash" {
		return errors.New("crashing at start as MODE=crash asks")
	}

	started := time.Now()
	var ready atomic.Bool
	var served atomic.Int64
	// firstServed is when the first request (not a health check) was
	// served, in UnixNano; FAIL_AFTER and RESET_AFTER count from it.
	var firstServed atomic.Int64
	after := func(d time.Duration) bool {
		t := firstServed.Load()
		return d > 0 && t != 0 && time.Since(time.Unix(0, t)) > d
	}
	failing := func() bool { return after(cfg.failAfter) }
	resetting := func() bool { return after(cfg.resetAfter) }
	hostname, _ := os.Hostname()

	mux := http.NewServeMux()
	health := func(w http.ResponseWriter, r *http.Request) {
		switch {
		case cfg.mode == "never-healthy":
			http.Error(w, "never healthy (MODE=never-healthy)", http.StatusServiceUnavailable)
		case failing():
			http.Error(w, "failing (FAIL_AFTER)", http.StatusInternalServerError)
		case cfg.mode == "unhealthy-after" && time.Since(started) > cfg.unhealthyAfter:
			http.Error(w, "turned unhealthy (MODE=unhealthy-after)", http.StatusServiceUnavailable)
		case !ready.Load():
			http.Error(w, "warming up", http.StatusServiceUnavailable)
		default:
			for _, peer := range cfg.needs {
				c, err := net.DialTimeout("tcp", peer, time.Second)
				if err != nil {
					http.Error(w, "cannot reach "+peer+" (NEEDS): "+err.Error(), http.StatusServiceUnavailable)
					return
				}
				_ = c.Close() // only reachability matters
			}
			fmt.Fprintln(w, "ok")
		}
	}
	mux.HandleFunc("/healthz", health)
	mux.HandleFunc("/health", health) // the path traefik/whoami, used in compose-examples, answers
	ws := newWSHub(cfg.version)
	mux.Handle("/ws", ws)
	drainSig := make(chan os.Signal, 1)
	signal.Notify(drainSig, syscall.SIGUSR1)
	go func() {
		for range drainSig {
			ws.drain()
		}
	}()
	mux.HandleFunc("/served", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, served.Load())
	})
	mux.HandleFunc("/pre-switch", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(preSwitchFile)
		if err != nil {
			http.Error(w, "no pre-switch step ran", http.StatusNotFound)
			return
		}
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/peer", func(w http.ResponseWriter, r *http.Request) {
		// Who connected, address and port: the relay's dials come from
		// the service network's gateway, the kernel path's from the
		// kernel network's.
		fmt.Fprintln(w, r.RemoteAddr)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, cfg.version)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		if firstServed.CompareAndSwap(0, time.Now().UnixNano()) {
			armAfterFirst(cfg, &lnClose)
		}
		n, err := io.Copy(io.Discard, r.Body)
		if resetting() {
			resetConn(w)
			return
		}
		if failing() {
			// The version header says who answered, so a test can count
			// these apart from requests lost on the way.
			w.Header().Set("X-Version", cfg.version)
			http.Error(w, "failing (FAIL_AFTER)", http.StatusInternalServerError)
			return
		}
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		served.Add(1)
		w.Header().Set("X-Version", cfg.version)
		fmt.Fprintf(w, "%s %s %s host=%s body=%d\n", cfg.version, r.Method, r.URL.Path, hostname, n)
	})

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Serve as soon as the port is open: during warm-up every endpoint
	// answers 503, as a real app still loading does.
	errc := make(chan error, 1)
	serve := func() error {
		ln, err := net.Listen("tcp", cfg.listen)
		if err != nil {
			return err
		}
		lnClose.Store(&ln)
		go func() { errc <- srv.Serve(ln) }()
		return nil
	}
	if !cfg.lateListen {
		if err := serve(); err != nil {
			return err
		}
	}
	select {
	case <-time.After(cfg.warmup):
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
	if cfg.lateListen {
		if err := serve(); err != nil {
			return err
		}
	}
	ready.Store(true)
	log.Printf("demoapp %s ready on %s", cfg.version, cfg.listen)

	select {
	case err := <-errc:
		if !closedOnPurpose.Load() {
			return err
		}
		<-ctx.Done() // CLOSE_AFTER: running without a listener until stopped
	case <-ctx.Done():
	}
	log.Printf("demoapp %s: SIGTERM, stopping after %s (served %d requests)", cfg.version, cfg.stopDelay, served.Load())
	time.Sleep(cfg.stopDelay) // a slow-stopping app keeps serving for a while, as real ones do
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Printf("demoapp %s stopped cleanly", cfg.version)
	return nil
}

// lnClose is the app's listener once open (CLOSE_AFTER closes it), and
// closedOnPurpose says it did, so the end of Serve is not the app's end.
var (
	lnClose         atomic.Pointer[net.Listener]
	closedOnPurpose atomic.Bool
)

// armAfterFirst starts the EXIT_AFTER and CLOSE_AFTER timers, which count
// from the first request served.
func armAfterFirst(cfg config, ln *atomic.Pointer[net.Listener]) {
	if cfg.exitAfter > 0 {
		time.AfterFunc(cfg.exitAfter, func() {
			log.Printf("demoapp %s: exiting with status 3 as EXIT_AFTER=%s asks", cfg.version, cfg.exitAfter)
			os.Exit(3)
		})
	}
	if cfg.closeAfter > 0 {
		time.AfterFunc(cfg.closeAfter, func() {
			log.Printf("demoapp %s: closing the listener as CLOSE_AFTER=%s asks; the process keeps running", cfg.version, cfg.closeAfter)
			if l := ln.Load(); l != nil {
				closedOnPurpose.Store(true)
				_ = (*l).Close()
			}
		})
	}
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	v := env(key, "")
	if v == "" {
		return def
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Millisecond
	}
	log.Printf("demoapp: ignoring bad %s=%q", key, v)
	return def
}

// resetConn ends the request's connection with a TCP reset and no answer
// (SO_LINGER 0, then close), as a crashing worker or a broken proxy in the
// app would (RESET_AFTER).
func resetConn(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot reset: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
