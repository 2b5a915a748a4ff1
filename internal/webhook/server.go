package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/baton-sh/baton/internal/unattended"
)

// DefaultMaxBody bounds a request body: notifications are a few KiB.
const DefaultMaxBody = 1 << 20

// Errors a Resolver returns (wrapped) for a target it will not deploy.
var (
	ErrNotFound   = errors.New("no such container")
	ErrNotEnabled = errors.New("container not enabled for unattended deploys")
)

// Server answers:
//
//	POST /v1/deploy/{target}  deploy target (202 with a request id)
//	GET  /v1/deploys/{id}     a request's status
//	GET  /metrics             Prometheus metrics (when Metrics is set; needs the token or a v1 signature)
//	GET  /healthz             200 while serving
type Server struct {
	Auth    *Auth
	MaxBody int64 // default DefaultMaxBody
	// Repos says which images a request may deploy onto a container.
	Repos RepoPolicy
	// Resolve checks that target may be deployed and returns the image
	// reference its container runs (Config.Image).
	Resolve func(ctx context.Context, target string) (string, error)
	Submit  func(unattended.Job) (unattended.Status, error)
	Status  func(id string) (unattended.Status, bool)
	// History finds a request no longer in memory (after a restart) in the
	// journal. Optional.
	History func(id string) (unattended.Status, bool)
	Metrics http.Handler   // optional
	Observe func(code int) // optional: counts answers
	Log     *slog.Logger
}

// Accepted is the body of a 202 answer.
type Accepted struct {
	ID        string `json:"id"`
	Target    string `json:"target"`
	Image     string `json:"image,omitempty"`
	State     string `json:"state"`
	RunID     string `json:"run_id,omitempty"`
	StatusURL string `json:"status_url"`
}

// Ignored is the body of a 200 answer to a notification that concerns
// another repository or no tag.
type Ignored struct {
	Ignored string `json:"ignored"`
}

type apiError struct {
	Error string `json:"error"`
}

var targetRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$`)

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/deploy/{target}", s.deploy)
	mux.HandleFunc("GET /v1/deploys/{id}", s.status)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, http.StatusOK, map[string]string{"status": "ok"})
	})
	if s.Metrics != nil {
		// Metrics name every target and how its deploys went: they need a
		// credential like the rest (Prometheus sends the bearer token with
		// authorization.credentials_file). --metrics-listen serves them
		// without one, on a listener of the operator's choosing.
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			if !s.authorize(w, r, nil) {
				return
			}
			s.Metrics.ServeHTTP(w, r)
		})
	}
	return mux
}

func (s *Server) maxBody() int64 {
	if s.MaxBody > 0 {
		return s.MaxBody
	}
	return DefaultMaxBody
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody()))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", s.maxBody()))
			return
		}
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("reading body: %w", err))
		return
	}
	v, err := s.Auth.Check(r, body)
	if err != nil {
		s.refuseAuth(w, r, err)
		return
	}
	target := r.PathValue("target")
	if !targetRE.MatchString(target) {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("%q is not a container name", target))
		return
	}
	p, err := ParsePayload(r.Header.Get("Content-Type"), body)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	if v.Kind == KindBodySigned {
		if !p.Notification {
			s.refuseAuth(w, r, ErrBodyOnly)
			return
		}
		// The body-only signature binds no time: only pushes the registry
		// dated within the window count.
		p = p.FreshOnly(s.Auth.now(), s.Auth.window())
	}
	current, err := s.Resolve(r.Context(), target)
	switch {
	case errors.Is(err, ErrNotFound):
		s.fail(w, r, http.StatusNotFound, err)
		return
	case errors.Is(err, ErrNotEnabled):
		s.fail(w, r, http.StatusForbidden, err)
		return
	case err != nil:
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	img, ignore, err := p.ImageFor(current)
	if err != nil {
		s.fail(w, r, http.StatusUnprocessableEntity, err)
		return
	}
	if ignore == "" && v.Kind == KindBodySigned {
		// The same notification again (a replay, or a registry's retry after
		// a lost answer): nothing more to do, and a 200 stops the retries.
		err := s.Auth.Replay.Add(v.BodyReplayKey(target), s.Auth.now().Add(2*s.Auth.window()), s.Auth.now())
		switch {
		case errors.Is(err, ErrReplayed):
			ignore = "this notification was already accepted"
		case err != nil:
			s.fail(w, r, http.StatusServiceUnavailable, err)
			return
		}
	}
	if ignore != "" {
		if v.Kind == KindBodySigned && len(p.Pushes) == 0 {
			ignore += " (a body-only signature counts only for pushes the registry dated within " + s.Auth.window().String() + ")"
		}
		s.logf(r, http.StatusOK, "ignored", "target", target, "reason", ignore, "format", p.Format)
		s.reply(w, r, http.StatusOK, Ignored{Ignored: ignore})
		return
	}
	if err := s.Repos.Check(current, img); err != nil {
		s.fail(w, r, http.StatusForbidden, fmt.Errorf("container %s: %w", target, err))
		return
	}
	st, err := s.Submit(unattended.Job{Target: target, Image: img, Trigger: "webhook", Who: who(r, p.Actor)})
	if errors.Is(err, unattended.ErrClosed) {
		s.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	s.logf(r, http.StatusAccepted, "deploy accepted", "target", target, "image", img, "id", st.ID, "format", p.Format, "state", st.State)
	s.reply(w, r, http.StatusAccepted, Accepted{ID: st.ID, Target: target, Image: img, State: st.State, RunID: st.RunID, StatusURL: "/v1/deploys/" + st.ID})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, nil) {
		return
	}
	id := r.PathValue("id")
	st, ok := s.Status(id)
	if !ok && s.History != nil {
		st, ok = s.History(id)
	}
	if !ok {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no deploy request %q", id))
		return
	}
	s.reply(w, r, http.StatusOK, st)
}

// authorize checks a request that is not a registry notification: a
// body-only signature is not enough (its empty-body signature is a
// constant). It answers the refusal itself.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, body []byte) bool {
	v, err := s.Auth.Check(r, body)
	if err == nil && v.Kind == KindBodySigned {
		err = ErrBodyOnly
	}
	if err != nil {
		s.refuseAuth(w, r, err)
		return false
	}
	return true
}

func (s *Server) refuseAuth(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrReplayCacheFull) {
		s.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="baton"`)
	s.fail(w, r, http.StatusUnauthorized, err)
}

// who names the sender: the payload's actor, if any, at the remote address.
func who(r *http.Request, actor string) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if actor != "" {
		return actor + "@" + host
	}
	return host
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, err error) {
	s.logf(r, code, "request refused", "error", err)
	s.reply(w, r, code, apiError{Error: err.Error()})
}

func (s *Server) reply(w http.ResponseWriter, _ *http.Request, code int, v any) {
	if s.Observe != nil {
		s.Observe(code)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away: nothing to do
}

func (s *Server) logf(r *http.Request, code int, msg string, args ...any) {
	if s.Log == nil {
		return
	}
	lvl := slog.LevelInfo
	if code >= 400 {
		lvl = slog.LevelWarn
	}
	s.Log.Log(r.Context(), lvl, msg, append([]any{"method", r.Method, "path", r.URL.Path, "code", code, "addr", r.RemoteAddr}, args...)...)
}

// Serve runs srv on ln until ctx ends, then stops accepting connections and
// waits (up to grace) for requests in flight.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stopping the server on %s: %w", ln.Addr(), err)
	}
	return nil
}
