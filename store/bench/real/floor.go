package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/notifier/notifier/notifier"
)

// floorWorkers is how many attempts serve has in flight to one host at
// its defaults: --partner-concurrency, half of --concurrency (512).
const floorWorkers = 256

// floorIdle is the idle connections serve keeps per host (--concurrency).
const floorIdle = 512

// serveGCPercent is serve's GOGC when its environment sets none (main.go).
const serveGCPercent = 200

// httpFloor is the http-floor scenario: what HTTP at both ends costs on
// this machine, with nothing else. n notices of the throughput scenario's
// size are POSTed to the partner process by serve's sender
// (notifier.Deliverer over the transport serve uses, whose only addition
// in serve is a dial-time guard, once per connection), with as many in
// flight and as many idle connections as serve has at its defaults, run in
// this driver process: no Redis, no attempt log, no dispatcher, no
// enqueue. Bodies are built before the CPU is first read, so the driver's
// CPU is the sending alone (go-retryablehttp, net/http, the goroutines and
// their garbage). cpu_us_per_notice has the driver's CPU as serve and the
// partner's as partner. The throughput scenario can cost no less than this
// sum: it makes the same POSTs and adds Redis, the attempt log, enqueue
// and serve's own bookkeeping.
func (r *run) httpFloor(ctx context.Context, n int) (Result, error) {
	r.seq++
	res := Result{Scenario: "http-floor", Notices: n, BodyBytes: r.cfg.body}
	if err := r.partner.reset(ctx); err != nil {
		return res, err
	}
	defer debug.SetGCPercent(debug.SetGCPercent(gcPercent(r.cfg.serveEnv)))
	stamp := time.Now()
	notices := make([]notifier.Notice, n)
	for i := range notices {
		notices[i] = notifier.Notice{ID: fmt.Sprintf("fl%d-%08d", r.seq, i), URL: r.partner.URL(),
			Body: []byte(body(i, r.cfg.body)), Stamp: stamp}
	}
	d := notifier.NewDeliverer(notifier.DefaultTimeout, floorIdle)
	work := make(chan *notifier.Notice, floorWorkers)
	failed := make(chan error, 1)
	var wg sync.WaitGroup
	self, partner := os.Getpid(), r.partner.Pid()
	a := cpuSample{serve: cpuTime(self), partner: cpuTime(partner)}
	for range floorWorkers {
		wg.Go(func() {
			for nt := range work {
				if got := d.Post(ctx, nt, 1); got.Err != nil || !notifier.Succeeded(got.Status) {
					select {
					case failed <- fmt.Errorf("notice %s: status %d, %v", nt.ID, got.Status, got.Err):
					default:
					}
				}
			}
		})
	}
	for i := range notices {
		work <- &notices[i]
	}
	close(work)
	wg.Wait()
	b := cpuSample{serve: cpuTime(self), partner: cpuTime(partner)}
	select {
	case err := <-failed:
		return res, err
	default:
	}
	st, err := r.partner.waitArrived(ctx, int64(n), time.Minute)
	if err != nil {
		return res, err
	}
	res.Delivered, res.PartnerConns = int(st.Arrived), st.Conns
	if span := time.Duration(st.LastNS - st.FirstNS); span > 0 {
		res.NoticesPerSec = float64(int(float64(st.Arrived-1) / span.Seconds()))
	}
	cpu := perNotice(a, b, 0, n)
	res.CPUPerNotice = &cpu
	return res, nil
}

// gcPercent is the GOGC serve runs with given the settings --serve-env
// adds to its environment: the last GOGC there (off counts as -1), or
// serve's own default.
func gcPercent(serveEnv []string) int {
	pct := serveGCPercent
	for _, kv := range serveEnv {
		if v, ok := strings.CutPrefix(kv, "GOGC="); ok {
			if strings.EqualFold(v, "off") {
				pct = -1
			} else if p, err := strconv.Atoi(v); err == nil {
				pct = p
			}
		}
	}
	return pct
}
