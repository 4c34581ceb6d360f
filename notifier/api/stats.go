package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifier/notifier/notifier"
)

// statsCollector exports the store's stats (notifier.StoreStats) as gauges.
// It reports the last figures a notifier.StatsGatherer read, so a scrape
// costs nothing in Redis or SQLite; before the first read it reports none,
// and a figure the store cannot count (nil) is left out.
type statsCollector struct {
	last func() (notifier.StoreStats, bool)
	now  func() time.Time

	usedMemory, keys, entries, logBytes, logRows, oldest, steps, at *prometheus.Desc
}

func newStatsCollector(last func() (notifier.StoreStats, bool)) *statsCollector {
	return &statsCollector{
		last: last, now: time.Now,
		usedMemory: prometheus.NewDesc("notifier_redis_used_memory_bytes",
			"Redis used_memory (summed over the masters of a cluster).", nil, nil),
		keys: prometheus.NewDesc("notifier_redis_keys",
			"Keys in the Redis database (DBSIZE), notifier's and any other's.", nil, nil),
		entries: prometheus.NewDesc("notifier_redis_entries",
			"notifier's Redis entries by kind: pending (due-index members, one per pending notice), parked, "+
				"delivered (ids remembered for the dedup window), fleet_stream (entries of the capped fleet stream).",
			[]string{"kind"}, nil),
		logBytes: prometheus.NewDesc("notifier_attempt_log_bytes",
			"Size of the SQLite attempt log: file=db the database file, file=wal its write-ahead log.", []string{"file"}, nil),
		logRows: prometheus.NewDesc("notifier_attempt_log_attempts",
			"About how many attempts the attempt log holds.", nil, nil),
		oldest: prometheus.NewDesc("notifier_attempt_log_oldest_age_seconds",
			"Age of the oldest row: table=attempts since its start, table=archive since its notice ended. --retain bounds both.",
			[]string{"table"}, nil),
		steps: prometheus.NewDesc("notifier_retention_step_seconds",
			"How long each retention step held the attempt log's writer (attempt logging waits behind it).", nil, nil),
		at: prometheus.NewDesc("notifier_stats_read_timestamp_seconds",
			"When the figures of notifier_redis_* and notifier_attempt_log_* were read (Unix seconds).", nil, nil),
	}
}

// Describe sends every descriptor.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.usedMemory, c.keys, c.entries, c.logBytes, c.logRows, c.oldest, c.steps, c.at} {
		ch <- d
	}
}

// Collect sends the last figures read.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.last()
	if !ok {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	r := st.Redis
	gauge(c.at, float64(st.At.UnixMilli())/1e3)
	gauge(c.usedMemory, float64(r.UsedMemory))
	gauge(c.keys, float64(r.Keys))
	gauge(c.entries, float64(r.Pending), "pending")
	gauge(c.entries, float64(r.Parked), "parked")
	if r.DeliveredRemembered != nil {
		gauge(c.entries, float64(*r.DeliveredRemembered), "delivered")
	}
	gauge(c.entries, float64(r.FleetStream), "fleet_stream")
	l := st.Log
	if l == nil {
		return
	}
	gauge(c.logBytes, float64(l.FileBytes), "db")
	gauge(c.logBytes, float64(l.WALBytes), "wal")
	gauge(c.logRows, float64(l.Attempts))
	now := c.now()
	for _, o := range []struct {
		table string
		t     time.Time
	}{{"attempts", l.OldestAttempt}, {"archive", l.OldestArchived}} {
		if !o.t.IsZero() {
			gauge(c.oldest, max(now.Sub(o.t), 0).Seconds(), o.table)
		}
	}
	if len(l.RetentionSteps) == len(notifier.RetentionStepBounds)+1 {
		buckets := make(map[float64]uint64, len(notifier.RetentionStepBounds))
		var n uint64
		for i, b := range notifier.RetentionStepBounds {
			n += l.RetentionSteps[i]
			buckets[b.Seconds()] = n
		}
		n += l.RetentionSteps[len(notifier.RetentionStepBounds)]
		ch <- prometheus.MustNewConstHistogram(c.steps, n, l.RetentionStepsTotal.Seconds(), buckets)
	}
}
