package healthcheck

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// warmUpTimeout bounds one warm-up request; first requests are allowed to be
// slow (that is what warming up is for) but not to hang the deploy.
const warmUpTimeout = 10 * time.Second

// WarmUp sends n sequential GET requests to url, typically right after Wait
// returned nil and before traffic is switched, so that lazy initialisation
// (caches, JIT, connection pools) is paid by baton rather than by users. It
// fails at the first answer that is not 2xx.
func WarmUp(ctx context.Context, url string, n int) error { return WarmUpVia(ctx, url, n, nil) }

// WarmUpVia is WarmUp with its connections made by dial.
func WarmUpVia(ctx context.Context, url string, n int, dial Dialer) error {
	tr := &http.Transport{Proxy: nil, DialContext: dial}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: warmUpTimeout + viaAllowance(dial), Transport: tr}
	for i := 1; i <= n; i++ {
		if err := warmUpOnce(ctx, c, url); err != nil {
			return fmt.Errorf("warm-up request %d/%d: %w", i, n, err)
		}
	}
	return nil
}

func warmUpOnce(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, transportError(err, warmUpTimeout))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", url, statusDetail(resp))
	}
	// Reading the whole body is part of the warm-up and lets the
	// connection be reused for the next request.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("GET %s: reading body: %w", url, err)
	}
	return nil
}
