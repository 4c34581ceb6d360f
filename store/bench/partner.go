package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notifier/notifier/backoff"
)

// partner answers 200 at once and records, per notice, how late each
// arrival was against stamp + S[n-1].
type partner struct {
	srv      *http.Server
	url      string
	mu       sync.Mutex
	schedule map[string]backoff.Schedule
	late     []time.Duration
	arrived  atomic.Int64
	last     atomic.Int64 // Unix ns of the latest arrival
}

func newPartner() (*partner, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &partner{url: "http://" + ln.Addr().String() + "/notify", schedule: map[string]backoff.Schedule{}}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 5 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *partner) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	_, _ = io.Copy(io.Discard, r.Body)
	stamp, _ := strconv.ParseInt(r.Header.Get("Notice-Stamp"), 10, 64)
	n, _ := strconv.Atoi(r.Header.Get("Notice-Attempt"))
	p.mu.Lock()
	if s, ok := p.schedule[r.Header.Get("Webhook-Id")]; ok {
		if due, ok := s.Due(time.UnixMilli(stamp), n); ok {
			p.late = append(p.late, now.Sub(due))
		}
	}
	p.mu.Unlock()
	p.arrived.Add(1)
	p.last.Store(now.UnixNano())
}

func (p *partner) reset(schedules map[string]backoff.Schedule) {
	p.mu.Lock()
	p.schedule, p.late = schedules, nil
	p.mu.Unlock()
	p.arrived.Store(0)
}

func waitArrivals(ctx context.Context, p *partner, n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for p.arrived.Load() < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

func summarize(p *partner, scenario string, backlog int, waker bool, notices int) Result {
	p.mu.Lock()
	late := slices.Clone(p.late)
	p.mu.Unlock()
	slices.Sort(late)
	r := Result{Scenario: scenario, Waker: waker, Backlog: backlog, Notices: notices, Delivered: len(late)}
	if len(late) > 0 {
		pct := func(q float64) float64 {
			return float64(late[min(int(q*float64(len(late))), len(late)-1)]) / 1e6
		}
		r.P50MS, r.P90MS, r.P99MS, r.MaxMS = pct(0.50), pct(0.90), pct(0.99), float64(late[len(late)-1])/1e6
	}
	return r
}
