package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/api"
)

// scrape GETs /metrics with auth and parses it.
func (e *env) scrape(auth string) map[string]*dto.MetricFamily {
	e.t.Helper()
	resp, b := e.do("GET", "/metrics", auth, "")
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		e.t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels are
// exactly labels ("k=v" pairs), or fails the test.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(got, ",") != strings.Join(labels, ",") {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no sample %s{%s}", name, strings.Join(labels, ","))
	return 0
}

func TestMetrics(t *testing.T) {
	var failCount atomic.Bool
	var m *api.Metrics
	e := newEnv(t, func(s *api.Server) {
		m = api.NewMetrics(prometheus.NewRegistry(), api.MetricsSource{
			PendingCount: func(ctx context.Context) (int64, error) {
				if failCount.Load() {
					return 0, errors.New("redis down")
				}
				return s.Queue.PendingCount(ctx, nil)
			},
			Recovered:   func() int64 { return 4 },
			ForeignKeys: func() uint64 { return 2 },
		})
		s.Metrics = m
	})
	for i := range 3 {
		e.expect(http.StatusCreated, "POST", "/v1/notices", fmt.Sprintf(`{"id":"m-%d","url":"http://127.0.0.1:9/hook","schedule":"1h"}`, i))
	}
	due := time.Now()
	for _, a := range []notifier.Attempt{
		{Partner: "acme", Outcome: notifier.Retry, Due: due, Start: due.Add(3 * time.Millisecond), Duration: 40 * time.Millisecond},
		{Partner: "acme", Outcome: notifier.Delivered, Due: due, Start: due.Add(2 * time.Second), Duration: 80 * time.Millisecond},
		{Partner: "bolt", Outcome: notifier.Retry, Due: due, Start: due, Duration: time.Second},
		{Partner: "bolt", Outcome: notifier.GaveUp, Due: due, Start: due, Duration: time.Second},
		{Partner: "", Outcome: notifier.Delivered, Due: due, Start: due, Duration: time.Millisecond},
		{Partner: "", Outcome: notifier.Error, Due: due, Start: due},
	} {
		m.Observe(a)
	}

	fams := e.scrape(token)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"notifier_attempts_total", []string{"outcome=retry", "partner=acme"}, 1},
		{"notifier_attempts_total", []string{"outcome=delivered", "partner=acme"}, 1},
		{"notifier_attempts_total", []string{"outcome=retry", "partner=bolt"}, 1},
		{"notifier_attempts_total", []string{"outcome=gave-up", "partner=bolt"}, 1},
		{"notifier_attempts_total", []string{"outcome=delivered", "partner=none"}, 1},
		{"notifier_attempts_total", []string{"outcome=error", "partner=none"}, 1},
		{"notifier_deliveries_total", []string{"partner=acme"}, 1},
		{"notifier_deliveries_total", []string{"partner=none"}, 1},
		{"notifier_give_ups_total", []string{"partner=bolt"}, 1},
		{"notifier_attempt_lateness_seconds", nil, 6},
		{"notifier_partner_response_seconds", []string{"partner=acme"}, 2},
		{"notifier_partner_response_seconds", []string{"partner=bolt"}, 2},
		{"notifier_partner_response_seconds", []string{"partner=none"}, 1}, // the error made no request
		{"notifier_pending_notices", nil, 3},
		{"notifier_sweep_recoveries_total", nil, 4},
		{"notifier_foreign_keys_total", nil, 2},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, strings.Join(c.labels, ","), got, c.want)
		}
	}
	if _, ok := fams["notifier_give_ups_total"]; ok && len(fams["notifier_give_ups_total"].GetMetric()) != 1 {
		t.Errorf("give-ups %v, want bolt only", fams["notifier_give_ups_total"].GetMetric())
	}

	t.Run("LatenessBuckets", func(t *testing.T) {
		h := fams["notifier_attempt_lateness_seconds"].GetMetric()[0].GetHistogram()
		b := h.GetBucket()
		// The text format lists the +Inf bucket last.
		if lo, hi := b[0].GetUpperBound(), b[len(b)-2].GetUpperBound(); lo != 0.001 || hi != 60 {
			t.Errorf("buckets %v..%v, want 0.001..60", lo, hi)
		}
		if got := b[0].GetCumulativeCount(); got != 4 { // four started on time
			t.Errorf("%d attempts within 1ms, want 4", got)
		}
	})

	t.Run("PendingKeepsTheLastValueWhenRedisFails", func(t *testing.T) {
		failCount.Store(true)
		defer failCount.Store(false)
		if got := value(t, e.scrape(token), "notifier_pending_notices"); got != 3 {
			t.Errorf("pending %v after a failed count, want the last value 3", got)
		}
	})

	t.Run("NeedsTheToken", func(t *testing.T) {
		resp, b := e.do("GET", "/metrics", "", "")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
		errorOf(t, resp, b)
	})

	t.Run("NilMetricsIgnoresObserve", func(t *testing.T) {
		var none *api.Metrics
		none.Observe(notifier.Attempt{Outcome: notifier.Delivered})
	})
}

func TestPublicMetrics(t *testing.T) {
	e := newEnv(t, func(s *api.Server) {
		s.Metrics = api.NewMetrics(prometheus.NewRegistry(), api.MetricsSource{})
		s.PublicMetrics = true
	})
	e.scrape("")
	resp, _ := e.do("GET", "/v1/notices/x", "", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("PublicMetrics opened /v1 too: status %d, want 401", resp.StatusCode)
	}
}
