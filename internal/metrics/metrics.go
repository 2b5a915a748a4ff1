// Package metrics exposes what baton's long-running modes (watch, serve) do
// as Prometheus metrics: deploys by result, their duration, and when each
// target last deployed successfully.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/baton-sh/baton/internal/deploy"
)

// Metrics holds baton's collectors in a registry of its own, so nothing else
// linked into the binary adds to what /metrics shows.
type Metrics struct {
	reg         *prometheus.Registry
	deploys     *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastSuccess *prometheus.GaugeVec
	running     *prometheus.GaugeVec
	checks      *prometheus.CounterVec
	webhooks    *prometheus.CounterVec
}

// New creates the collectors and registers them.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_deploys_total",
			Help: "Deploys finished, by target, trigger and result (deployed, up-to-date, failed).",
		}, []string{"target", "trigger", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "baton_deploy_duration_seconds",
			Help:    "How long deploys took, from the request to the end, by target and result.",
			Buckets: []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600},
		}, []string{"target", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "baton_last_success_timestamp_seconds",
			Help: "Unix time at which the last successful deploy (deployed or up to date) of a target finished.",
		}, []string{"target"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "baton_deploys_in_progress",
			Help: "Deploys running now, by target.",
		}, []string{"target"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_watch_checks_total",
			Help: "Registry checks made by baton watch, by target and result (unchanged, changed, error, skipped).",
		}, []string{"target", "result"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_webhook_requests_total",
			Help: "Webhook requests answered by baton serve, by HTTP status code.",
		}, []string{"code"}),
	}
	m.reg.MustRegister(m.deploys, m.duration, m.lastSuccess, m.running, m.checks, m.webhooks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gatherer gives tests access to the collected families.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// DeployStarted counts a deploy of target as running.
func (m *Metrics) DeployStarted(target string) { m.running.WithLabelValues(target).Inc() }

// DeployFinished records a finished deploy.
func (m *Metrics) DeployFinished(res *deploy.Result) {
	target, result := res.Target, string(res.Outcome)
	if result == "" {
		result = string(deploy.OutcomeFailed)
	}
	m.running.WithLabelValues(target).Dec()
	m.deploys.WithLabelValues(target, res.Trigger, result).Inc()
	m.duration.WithLabelValues(target, result).Observe(res.Duration.Seconds())
	if res.Outcome == deploy.OutcomeDeployed || res.Outcome == deploy.OutcomeUpToDate {
		end := res.StartedAt.Add(res.Duration)
		if res.StartedAt.IsZero() {
			end = time.Now()
		}
		m.lastSuccess.WithLabelValues(target).Set(float64(end.UnixNano()) / 1e9)
	}
}

// Check records one registry check of baton watch.
func (m *Metrics) Check(target, result string) { m.checks.WithLabelValues(target, result).Inc() }

// Webhook records the status code of one webhook request.
func (m *Metrics) Webhook(code int) { m.webhooks.WithLabelValues(strconv.Itoa(code)).Inc() }
