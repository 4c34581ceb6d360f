package api_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/api"
)

// gather registers metrics with src on a new registry and gathers them.
func gather(t *testing.T, src api.MetricsSource) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	api.NewMetrics(reg, src)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func TestStoreStatsMetrics(t *testing.T) {
	now := time.Now()
	st := notifier.StoreStats{At: now,
		Redis: notifier.RedisStats{UsedMemory: 1 << 20, Keys: 7, Pending: 3, Parked: 1, FleetStream: 5},
		Log: &notifier.LogStats{FileBytes: 4096, WALBytes: 100, Attempts: 9, OldestAttempt: now.Add(-time.Hour),
			RetentionSteps: []uint64{5, 1, 0, 0, 0, 0, 0, 2}, RetentionStepsTotal: time.Second}}

	t.Run("NoneBeforeTheFirstRead", func(t *testing.T) {
		fams := gather(t, api.MetricsSource{Stores: func() (notifier.StoreStats, bool) { return notifier.StoreStats{}, false }})
		if f := fams["notifier_redis_used_memory_bytes"]; f != nil {
			t.Errorf("used memory reported before any read: %v", f)
		}
	})
	t.Run("TheLastFigures", func(t *testing.T) {
		fams := gather(t, api.MetricsSource{Stores: func() (notifier.StoreStats, bool) { return st, true }})
		if v := value(t, fams, "notifier_redis_used_memory_bytes"); v != 1<<20 {
			t.Errorf("used memory: got %v", v)
		}
		if v := value(t, fams, "notifier_redis_entries", "kind=pending"); v != 3 {
			t.Errorf("pending: got %v, want 3", v)
		}
		if v := value(t, fams, "notifier_attempt_log_bytes", "file=wal"); v != 100 {
			t.Errorf("wal bytes: got %v, want 100", v)
		}
		if v := value(t, fams, "notifier_attempt_log_oldest_age_seconds", "table=attempts"); v < 3599 || v > 3700 {
			t.Errorf("oldest attempt's age: got %vs, want about an hour", v)
		}
		for _, m := range fams["notifier_redis_entries"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "delivered" {
					t.Error("delivered ids reported though the store did not count them")
				}
			}
		}
		if _, ok := fams["notifier_attempt_log_oldest_age_seconds"]; ok {
			for _, m := range fams["notifier_attempt_log_oldest_age_seconds"].GetMetric() {
				if m.GetLabel()[0].GetValue() == "archive" {
					t.Error("an empty archive's age reported")
				}
			}
		}
		h := fams["notifier_retention_step_seconds"].GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 8 || h.GetBucket()[0].GetCumulativeCount() != 5 || h.GetBucket()[1].GetCumulativeCount() != 6 {
			t.Errorf("retention steps: got %v", h)
		}
	})
	t.Run("DeliveredOnceCounted", func(t *testing.T) {
		n := int64(42)
		st := st
		st.Redis.DeliveredRemembered = &n
		fams := gather(t, api.MetricsSource{Stores: func() (notifier.StoreStats, bool) { return st, true }})
		if v := value(t, fams, "notifier_redis_entries", "kind=delivered"); v != 42 {
			t.Errorf("delivered: got %v, want 42", v)
		}
	})
}
