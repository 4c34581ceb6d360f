package api

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifier/notifier/notifier"
)

// pendingTimeout bounds the PendingCount call of one scrape.
const pendingTimeout = 2 * time.Second

// noPartner is the partner label of attempts sent under no partner.
const noPartner = "none"

// MetricsSource gives the values that live outside the Metrics: read at
// scrape time. A nil func leaves its metric out.
type MetricsSource struct {
	// PendingCount counts pending notices (notifier_pending_notices),
	// usually Queue.PendingCount with the configured partners' names.
	PendingCount func(ctx context.Context) (int64, error)
	// Recovered counts attempts the sweep claimed because their expiry
	// event never came (notifier_sweep_recoveries_total), usually
	// Dispatcher.Stats().Recovered.Load.
	Recovered func() int64
	// ForeignKeys counts expired events for keys that are not this
	// prefix's trigger keys (notifier_foreign_keys_total), usually
	// Queue.ForeignKeys.
	ForeignKeys func() uint64
	// Stores returns the store's last stats read (notifier_redis_*,
	// notifier_attempt_log_*), usually StatsGatherer.Last.
	Stores func() (notifier.StoreStats, bool)
}

// Metrics are the Prometheus metrics of one serve, all named notifier_*.
// Observe feeds the attempt metrics; the rest are read from a MetricsSource
// at scrape time. Partner labels take the configured partners' names, so
// their number is bounded by the config; "none" stands for no partner.
type Metrics struct {
	attempts   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	giveUps    *prometheus.CounterVec
	lateness   prometheus.Histogram
	response   *prometheus.HistogramVec

	pending  atomic.Int64 // the last pending count read, reported when a read fails
	gatherer prometheus.Gatherer
}

// NewMetrics creates the metrics and registers them with reg (nil:
// prometheus.DefaultRegisterer). It panics if reg already holds metrics of
// the same names, as MustRegister does. GET /metrics serves reg when it is
// also a Gatherer (a *prometheus.Registry is both), else
// prometheus.DefaultGatherer.
func NewMetrics(reg prometheus.Registerer, src MetricsSource) *Metrics {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notifier_attempts_total",
			Help: "Attempts logged, by outcome (delivered, retry, gave-up, error) and partner.",
		}, []string{"outcome", "partner"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notifier_deliveries_total",
			Help: "Notices delivered, by partner.",
		}, []string{"partner"}),
		giveUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notifier_give_ups_total",
			Help: "Notices given up (schedule exhausted, 410 Gone without pause_on_gone, or blocked by the address guard), by partner.",
		}, []string{"partner"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "notifier_attempt_lateness_seconds",
			Help:    "How long after its due time each attempt started.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		response: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "notifier_partner_response_seconds",
			Help:    "How long each attempt's request took (until the reply was read or the attempt failed), by partner.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30, 60},
		}, []string{"partner"}),
	}
	reg.MustRegister(m.attempts, m.deliveries, m.giveUps, m.lateness, m.response)
	if src.PendingCount != nil {
		count := src.PendingCount
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notifier_pending_notices",
			Help: "Notices with an attempt pending (parked ones included), read at scrape time.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), pendingTimeout)
			defer cancel()
			if n, err := count(ctx); err == nil {
				m.pending.Store(n)
			}
			return float64(m.pending.Load())
		}))
	}
	if src.Recovered != nil {
		recovered := src.Recovered
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notifier_sweep_recoveries_total",
			Help: "Attempts the sweep claimed because their expiry event never came.",
		}, func() float64 { return float64(recovered()) }))
	}
	if src.ForeignKeys != nil {
		foreign := src.ForeignKeys
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "notifier_foreign_keys_total",
			Help: "Expired events for keys that are not this prefix's trigger keys.",
		}, func() float64 { return float64(foreign()) }))
	}
	if src.Stores != nil {
		reg.MustRegister(newStatsCollector(src.Stores))
	}
	m.gatherer = prometheus.DefaultGatherer
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	}
	return m
}

// Observe counts attempt a; wire it as Dispatcher.Observe. It never blocks
// (it only updates counters and histograms), and a nil *Metrics ignores it.
func (m *Metrics) Observe(a notifier.Attempt) {
	if m == nil {
		return
	}
	partner := a.Partner
	if partner == "" {
		partner = noPartner
	}
	m.attempts.WithLabelValues(string(a.Outcome), partner).Inc()
	switch a.Outcome {
	case notifier.Delivered:
		m.deliveries.WithLabelValues(partner).Inc()
	case notifier.GaveUp, notifier.Blocked:
		m.giveUps.WithLabelValues(partner).Inc()
	}
	if !a.Due.IsZero() && !a.Start.IsZero() {
		m.lateness.Observe(max(a.Lateness(), 0).Seconds())
	}
	// An error outcome made no request: there is no response to time.
	if a.Outcome != notifier.Error {
		m.response.WithLabelValues(partner).Observe(a.Duration.Seconds())
	}
}
