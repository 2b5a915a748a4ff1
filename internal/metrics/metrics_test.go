package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/deploy"
)

// Scraping /metrics shows the three families change after a deploy.
func TestMetricsAfterDeploy(t *testing.T) {
	m := New()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	scrape := func() string {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	before := scrape()
	for _, f := range []string{"baton_deploys_total{", "baton_deploy_duration_seconds_count{", "baton_last_success_timestamp_seconds{"} {
		if strings.Contains(before, f) {
			t.Fatalf("%s present before any deploy", f)
		}
	}
	start := time.Unix(1700000000, 0)
	m.DeployStarted("web")
	m.DeployFinished(&deploy.Result{Target: "web", Trigger: "watch", Outcome: deploy.OutcomeDeployed, StartedAt: start, Duration: 7 * time.Second})
	m.DeployStarted("web")
	m.DeployFinished(&deploy.Result{Target: "web", Trigger: "webhook", Outcome: deploy.OutcomeFailed, StartedAt: start.Add(time.Minute), Duration: 3 * time.Second})
	m.Check("web", "unchanged")
	m.Webhook(401)
	after := scrape()
	for _, want := range []string{
		`baton_deploys_total{result="deployed",target="web",trigger="watch"} 1`,
		`baton_deploys_total{result="failed",target="web",trigger="webhook"} 1`,
		`baton_deploy_duration_seconds_count{result="deployed",target="web"} 1`,
		`baton_deploy_duration_seconds_sum{result="deployed",target="web"} 7`,
		`baton_deploy_duration_seconds_bucket{result="failed",target="web",le="5"} 1`,
		`baton_last_success_timestamp_seconds{target="web"} 1.700000007e+09`, // the failure did not move it
		`baton_deploys_in_progress{target="web"} 0`,
		`baton_watch_checks_total{result="unchanged",target="web"} 1`,
		`baton_webhook_requests_total{code="401"} 1`,
	} {
		if !strings.Contains(after, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
