// Package metrics holds psagate's Prometheus collectors. Label values are
// bounded: rule names (from the admin's files), providers, operations and
// fixed outcome words, never subjects, senders or devices.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"psagate/internal/version"
)

// Metrics is the set of collectors of one gateway.
type Metrics struct {
	Registry *prometheus.Registry

	SessionsActive        prometheus.Gauge
	MessagesReceived      *prometheus.CounterVec   // outcome
	MessagesDropped       *prometheus.CounterVec   // rule
	RuleMatches           *prometheus.CounterVec   // rule, action
	Decisions             *prometheus.CounterVec   // decision, effect
	PSAOperations         *prometheus.CounterVec   // provider, op, result
	PSADuration           *prometheus.HistogramVec // provider, op
	ProviderPaused        *prometheus.GaugeVec     // provider
	RulesLoaded           prometheus.Gauge
	ConfigReloadSuccess   prometheus.Gauge
	ConfigReloadTimestamp prometheus.Gauge
	LastMessageReceived   prometheus.Gauge
	SMTPRefused           *prometheus.CounterVec // reason
	BuildInfo             *prometheus.GaugeVec   // version, revision, goversion
	Reconciled            *prometheus.CounterVec // result
	QuarantinePruned      prometheus.Counter
	PSAErrors             *prometheus.CounterVec // provider, op, reason
}

// StateCounts feeds the gauges read from the database on each scrape.
type StateCounts struct {
	Spool, Outbox, Dead, OpenIncidents, Quarantine int
}

// New creates and registers every collector. counts is called on scrape
// (at most once a second) for the state gauges; it may be nil.
func New(counts func() (StateCounts, error)) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		SessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "psagate_smtp_sessions_active", Help: "SMTP sessions currently open.",
		}),
		MessagesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_messages_received_total",
			Help: "Messages received over SMTP, by outcome (queued, dropped, rejected, duplicate, error).",
		}, []string{"outcome"}),
		MessagesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_messages_dropped_total", Help: "Messages dropped by a rule.",
		}, []string{"rule"}),
		RuleMatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_rule_matches_total", Help: "Messages decided by each rule (audit-mode matches have action=\"audit\").",
		}, []string{"rule", "action"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_decisions_total", Help: "Incident decisions after correlation, by decision and effect.",
		}, []string{"decision", "effect"}),
		// Not "tickets_total": most operations (notes, attachments, closes)
		// make no ticket.
		PSAOperations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_psa_operations_total",
			Help: "PSA operations by provider, op (create, note, attach, close, reopen) and result (success, transient_error, permanent_error, auth_error).",
		}, []string{"provider", "op", "result"}),
		PSADuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "psagate_psa_operation_duration_seconds",
			Help:    "Time taken by one PSA operation (all its HTTP requests), by provider and op.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider", "op"}),
		ProviderPaused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "psagate_provider_paused", Help: "1 while a provider is paused after an authentication failure.",
		}, []string{"provider"}),
		RulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "psagate_rules_loaded", Help: "Rules in the active rule set.",
		}),
		ConfigReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			// The names Prometheus and Alertmanager use for the same thing.
			Name: "psagate_config_last_reload_successful", Help: "1 if the last config/rules reload succeeded, 0 if it failed (the previous set stays active).",
		}),
		ConfigReloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "psagate_config_last_reload_success_timestamp_seconds", Help: "Unix time of the last successful config/rules load.",
		}),
		LastMessageReceived: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "psagate_last_message_received_timestamp_seconds", Help: "Unix time of the last message accepted over SMTP.",
		}),
		SMTPRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_smtp_refused_total",
			Help: "SMTP connections and commands refused, by reason (network, relay, size, recipients, auth, tls, busy, bare_lf, protocol, memory, loop).",
		}, []string{"reason"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "psagate_build_info",
			Help: "Always 1; the labels say which build runs (join on it: * on(instance) group_left(version) psagate_build_info).",
		}, []string{"version", "revision", "goversion"}),
		Reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_tickets_reconciled_total",
			Help: "Ticket states read back from the PSA (before a note or close, and by [incidents] reconcile_every), by result (open, closed-in-psa, error).",
		}, []string{"result"}),
		PSAErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_psa_errors_total",
			Help: "Failed PSA operations by provider, op and reason (validation: the PSA refused a value or a missing field, fix the config; permission; auth; server; transient; permanent).",
		}, []string{"provider", "op", "reason"}),
	}
	m.QuarantinePruned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "psagate_quarantine_pruned_total",
		Help: "Quarantined messages deleted by [quarantine] max_messages or max_age (each is audited).",
	})
	r.MustRegister(m.Reconciled, m.QuarantinePruned)
	r.MustRegister(m.SessionsActive, m.MessagesReceived, m.MessagesDropped, m.RuleMatches, m.Decisions,
		m.PSAOperations, m.PSADuration, m.ProviderPaused, m.RulesLoaded, m.ConfigReloadSuccess,
		m.ConfigReloadTimestamp, m.LastMessageReceived, m.SMTPRefused, m.BuildInfo, m.PSAErrors)
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if counts != nil {
		r.MustRegister(&stateCollector{counts: counts})
	}
	// Pre-create every series whose label values are known now, so that
	// dashboards and alerts see zeros, not gaps, and increase() over the
	// first event counts it (a series born at 1 has no increase).
	for _, o := range MessageOutcomes {
		m.MessagesReceived.WithLabelValues(o)
	}
	for _, r := range RefusalReasons {
		m.SMTPRefused.WithLabelValues(r)
	}
	for _, d := range DecisionEffects {
		m.Decisions.WithLabelValues(d[0], d[1])
	}
	v := version.Get()
	m.BuildInfo.WithLabelValues(v.Version, v.Revision, v.GoVersion).Set(1)
	for _, r := range ReconcileResults {
		m.Reconciled.WithLabelValues(r)
	}
	return m
}

// Label values known before any traffic. A value used with these vectors
// must be listed here (tests check the callers' words against them).
var (
	MessageOutcomes = []string{"queued", "dropped", "rejected", "duplicate", "error"}
	RefusalReasons  = []string{"network", "relay", "size", "recipients", "auth", "tls", "busy", "bare_lf", "protocol", "memory", "loop", "rate", "recipient"}
	PSAOps          = []string{"create", "note", "attach", "close", "reopen", "priority"}
	PSAResults      = []string{"success", "transient_error", "permanent_error", "auth_error"}
	// DecisionEffects are the decision/effect pairs the incident engine
	// produces (internal/incident: each Outcome it returns).
	DecisionEffects = [][2]string{
		{"ticket", "opened"}, {"ticket", "held"}, {"ticket", "held-repeat"}, {"ticket", "new-ticket"}, {"ticket", "reopened"},
		{"note", "noted"}, {"note", "ignored"}, {"note", "no-op"},
		{"close", "closed"}, {"close", "cancelled"}, {"close", "noted-not-closed"}, {"close", "no-op"},
		{"close", "closed-in-psa"}, {"note", "throttled"}, {"note", "summarised"}, {"note", "escalated"},
		{"ticket", "silenced"}, {"note", "silenced"}, {"close", "silenced"},
	}
	// ReconcileResults are the results of reading a ticket's state back.
	ReconcileResults = []string{"open", "closed-in-psa", "error"}
)

// InitProviders creates the per-provider series of each named provider.
func (m *Metrics) InitProviders(names []string) {
	for _, p := range names {
		m.ProviderPaused.WithLabelValues(p)
		for _, op := range PSAOps {
			m.PSADuration.WithLabelValues(p, op)
			for _, r := range PSAResults {
				m.PSAOperations.WithLabelValues(p, op, r)
			}
		}
	}
}

// RuleAction is a rule's name and the action it takes when it matches.
type RuleAction struct {
	Name, Action string
	Audit        bool // audit mode: counted as action "audit"
}

// InitRules creates the series of each rule of a newly loaded rule set.
// Series of rules since removed stay until restart, as counters should.
func (m *Metrics) InitRules(rs []RuleAction) {
	for _, r := range rs {
		a := r.Action
		if r.Audit {
			a = "audit"
		}
		m.RuleMatches.WithLabelValues(r.Name, a)
		if a == "drop" {
			m.MessagesDropped.WithLabelValues(r.Name)
		}
	}
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

var (
	descOutbox    = prometheus.NewDesc("psagate_outbox_jobs", "PSA jobs waiting in the outbox.", nil, nil)
	descDead      = prometheus.NewDesc("psagate_dead_jobs", "PSA jobs that failed for good (see `psagate queue list`).", nil, nil)
	descIncidents = prometheus.NewDesc("psagate_incidents_open", "Incidents pending (hold-down) or open.", nil, nil)
	descSpool     = prometheus.NewDesc("psagate_spool_messages", "Accepted messages not yet processed.", nil, nil)
	descQuar      = prometheus.NewDesc("psagate_quarantine_messages", "Messages kept in quarantine.", nil, nil)
)

// stateCollector reads the database counts on scrape, cached for a second
// so that several scrapers do not each walk the buckets.
type stateCollector struct {
	counts func() (StateCounts, error)
	mu     sync.Mutex
	last   time.Time
	cached StateCounts
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOutbox
	ch <- descDead
	ch <- descIncidents
	ch <- descSpool
	ch <- descQuar
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.last) > time.Second {
		if s, err := c.counts(); err == nil {
			c.cached, c.last = s, time.Now()
		}
	}
	s := c.cached
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(s.Outbox))
	ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(s.Dead))
	ch <- prometheus.MustNewConstMetric(descIncidents, prometheus.GaugeValue, float64(s.OpenIncidents))
	ch <- prometheus.MustNewConstMetric(descSpool, prometheus.GaugeValue, float64(s.Spool))
	ch <- prometheus.MustNewConstMetric(descQuar, prometheus.GaugeValue, float64(s.Quarantine))
}
