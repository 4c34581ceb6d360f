package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/notifier/notifier/notifier"
)

// floorWorkers is serve's default --concurrency: the floor sends with as
// many attempts in flight as serve does.
const floorWorkers = 512

// serveGCPercent is serve's GOGC when its environment sets none.
const serveGCPercent = 200

// httpFloor is the http-floor scenario: what HTTP at both ends costs on
// this machine, with nothing else. n notices of the throughput scenario's
// size are POSTed to the partner process by serve's own sender
// (notifier.Deliverer, built as serve builds it, with serve's 512 workers
// and their kept-alive connections), run in this driver process: no Redis,
// no attempt log, no dispatcher, no enqueue. cpu_us_per_notice has this
// process's CPU as serve and the partner's as partner. The throughput
// scenario can cost no less than this sum: it makes the same POSTs and
// adds Redis, the attempt log, enqueue and serve's own bookkeeping.
func (r *run) httpFloor(ctx context.Context, n int) (Result, error) {
	r.seq++
	res := Result{Scenario: "http-floor", Notices: n, BodyBytes: r.cfg.body}
	if err := r.partner.reset(ctx); err != nil {
		return res, err
	}
	// Collect garbage as serve does (its GOGC unless the environment
	// sets one; see main.go).
	defer debug.SetGCPercent(debug.SetGCPercent(serveGCPercent))
	d := notifier.NewDeliverer(notifier.DefaultTimeout, floorWorkers)
	url, stamp := r.partner.URL(), time.Now()
	work := make(chan int, floorWorkers)
	failed := make(chan error, 1)
	var wg sync.WaitGroup
	self, partner := os.Getpid(), r.partner.Pid()
	selfCPU0, partnerCPU0 := cpuTime(self), cpuTime(partner)
	for range floorWorkers {
		wg.Go(func() {
			for i := range work {
				nt := notifier.Notice{ID: fmt.Sprintf("fl%d-%08d", r.seq, i), URL: url,
					Body: []byte(body(i, r.cfg.body)), Stamp: stamp}
				if res := d.Post(ctx, &nt, 1); res.Err != nil || !notifier.Succeeded(res.Status) {
					select {
					case failed <- fmt.Errorf("notice %s: status %d, %v", nt.ID, res.Status, res.Err):
					default:
					}
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-failed:
		return res, err
	default:
	}
	st, err := r.partner.waitArrived(ctx, int64(n), time.Minute)
	if err != nil {
		return res, err
	}
	a := cpuSample{serve: selfCPU0, partner: partnerCPU0}
	b := cpuSample{serve: cpuTime(self), partner: cpuTime(partner)}
	res.Delivered, res.PartnerConns = int(st.Arrived), st.Conns
	if span := time.Duration(st.LastNS - st.FirstNS); span > 0 {
		res.NoticesPerSec = float64(int(float64(st.Arrived-1) / span.Seconds()))
	}
	cpu := perNotice(a, b, 0, n)
	res.CPUPerNotice = &cpu
	return res, nil
}
