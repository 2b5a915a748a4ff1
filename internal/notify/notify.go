// Package notify tells the outside world about unattended deploys: a JSON
// POST to a webhook URL when a deploy finishes, and --pre-deploy and
// --post-deploy commands that get the deploy's details in their environment.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/baton-sh/baton/internal/journal"
	"github.com/baton-sh/baton/internal/redact"
)

// Message is the JSON body a notification carries: the journal entry of the
// deploy plus what a person reading a chat message wants.
type Message struct {
	// Event is "deploy.succeeded" or "deploy.failed".
	Event string `json:"event"`
	journal.Entry
	// LogTail is the last lines the new container logged (a successful
	// deploy) or the lines the health check captured before it gave up (a
	// failed one).
	LogTail []string `json:"log_tail,omitempty"`
	// Text is a one-line summary, for chat webhooks that show a text field.
	Text string `json:"text"`
}

// NewMessage builds the notification for a finished deploy.
func NewMessage(e journal.Entry, logTail []string) Message {
	m := Message{Event: "deploy.succeeded", Entry: e, LogTail: logTail}
	if e.Outcome == "failed" {
		m.Event = "deploy.failed"
		m.Text = fmt.Sprintf("baton: deploy of %s to %s failed (%s, by %s): %s", e.Target, orCurrent(e.NewImage), e.Trigger, e.Who, e.Error)
	} else {
		m.Text = fmt.Sprintf("baton: %s now runs %s (was %s; %s, by %s, in %s)", e.Target, e.NewImage, e.OldImage, e.Trigger, e.Who, e.Duration.Round(100*time.Millisecond))
	}
	return m
}

func orCurrent(s string) string {
	if s == "" {
		return "its current image"
	}
	return s
}

// Notifier posts messages to a URL.
type Notifier struct {
	URL string
	// Secret, if set, signs each body: X-Baton-Signature: sha256=<hex HMAC>,
	// the same scheme baton serve checks, so a receiver can verify it.
	Secret []byte
	Client *http.Client // default: 10s timeout
	// Attempts is how often a failed post is tried (default 3), with a
	// doubling pause starting at Backoff (default 1s).
	Attempts int
	Backoff  time.Duration
}

// Send posts m as JSON, retrying on a transport error or a 5xx answer.
// Its error names the URL by scheme and host only: the URL often holds a
// token (user:password@, ?token=, a chat webhook's path).
func (n *Notifier) Send(ctx context.Context, m Message) error {
	return redact.Error(n.send(ctx, m))
}

func (n *Notifier) send(ctx context.Context, m Message) error {
	where := redact.Endpoint(n.URL)
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("notification to %s: %w", where, err)
	}
	attempts, backoff := n.Attempts, n.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	client := n.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	var last error
	for i := range attempts {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("notification to %s: %w (last try: %v)", where, ctx.Err(), last)
			case <-time.After(backoff << (i - 1)):
			}
		}
		retry, err := n.post(ctx, client, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry {
			break
		}
	}
	return fmt.Errorf("notification to %s: %w", where, last)
}

func (n *Notifier) post(ctx context.Context, client *http.Client, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("not a valid URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "baton")
	if len(n.Secret) > 0 {
		req.Header.Set("X-Baton-Signature", Sign(n.Secret, body))
	}
	resp, err := client.Do(req)
	if err != nil {
		// net/http puts the whole URL in its error.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redact.Endpoint(n.URL)
		}
		return !errors.Is(err, context.Canceled), err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, fmt.Errorf("answered %s", resp.Status)
}

// Sign returns the signature header value for body: "sha256=" and the hex
// HMAC-SHA256 of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
