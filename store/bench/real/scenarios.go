package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/notifier/notifier/store/bench/procfs"
)

// Result is one JSON line of output.
type Result struct {
	// Scenario is throughput, http-floor, enqueue-floor, enqueue-backlog,
	// lateness or lateness-aof-rewrite; peer runs add peer-summary.
	Scenario string `json:"scenario"`
	// Tool is what delivered: notifier, or asynq in a peer run.
	Tool string `json:"tool"`
	// Path is "real": serve, the partner and enqueue are processes of
	// their own, as users run them.
	Path string `json:"path"`
	// Waker is whether serve ran with its waker (false: --no-wake); nil
	// for asynq.
	Waker *bool `json:"waker,omitempty"`
	// Pending is how many other notices were pending (due in a day).
	Pending int `json:"pending"`
	// Notices is how many notices the scenario enqueued; Delivered how
	// many reached the partner (lateness: whose retry did).
	Notices   int `json:"notices"`
	Delivered int `json:"delivered"`
	// NoticesPerSec is first attempts delivered per second: the notices
	// over the span from the partner's first arrival to its last.
	NoticesPerSec float64 `json:"notices_per_sec,omitempty"`
	// EnqueuePerSec is lines per second of `notifier enqueue --file`,
	// timed as a process from start to exit.
	EnqueuePerSec float64 `json:"enqueue_per_sec,omitempty"`
	// DuePerSec is how densely the retries of a lateness scenario come
	// due; P50MS..MaxMS is their lateness: the partner's receive time minus
	// the due time in serve's attempt log.
	DuePerSec float64 `json:"due_per_sec,omitempty"`
	P50MS     float64 `json:"p50_ms,omitempty"`
	P90MS     float64 `json:"p90_ms,omitempty"`
	P99MS     float64 `json:"p99_ms,omitempty"`
	MaxMS     float64 `json:"max_ms,omitempty"`
	// CPUPerNotice is CPU time per notice in microseconds, by process,
	// over the whole scenario (from before the enqueue until every attempt
	// is in the attempt log).
	CPUPerNotice *CPU `json:"cpu_us_per_notice,omitempty"`
	// BytesPerPending is Redis used_memory per pending notice beyond its
	// body; BytesPerDelivered what a delivered notice leaves in Redis (its
	// dedup tombstone). Both once enqueue receipts are gone.
	BytesPerPending   float64 `json:"bytes_per_pending,omitempty"`
	BytesPerDelivered float64 `json:"bytes_per_delivered,omitempty"`
	// RedisCommandsPerNotice is how many commands Redis ran per notice
	// during a throughput scenario (INFO commandstats), those run inside
	// scripts included and the scripts themselves (EVAL, EVALSHA) not:
	// what a script saves by asking one command for a whole batch.
	RedisCommandsPerNotice float64 `json:"redis_commands_per_notice,omitempty"`
	// AOFRewrites is how many AOF rewrites Redis did during a lateness
	// scenario: each forks Redis and keeps a core busy while it writes.
	// lateness starts once a rewrite has settled the backlog into the
	// AOF's base, as on a serve that has run for a while; its variant
	// lateness-aof-rewrite starts one a quarter into the retries.
	AOFRewrites *int `json:"aof_rewrites,omitempty"`
	// ServePeakRSS is the most resident memory serve has had by the end
	// of a throughput scenario (VmHWM), in bytes.
	ServePeakRSS int64 `json:"serve_peak_rss_bytes,omitempty"`
	// PartnerConns is how many connections the partner accepted during
	// a throughput scenario.
	PartnerConns int64  `json:"partner_conns,omitempty"`
	BodyBytes    int    `json:"body_bytes"`
	Cores        int    `json:"cores"`
	Redis        string `json:"redis_version"`
}

// body is a JSON object of exactly size bytes (at least its fixed part).
func body(i, size int) string {
	b := fmt.Sprintf(`{"order":%d,"pad":""}`, i)
	return b[:len(b)-2] + strings.Repeat("x", max(size-len(b), 0)) + `"}`
}

// writeLines writes n enqueue --file lines, line(i) each, to path.
func writeLines(path string, n int, line func(i int) string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		w.WriteString(line(i))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func line(id, url, body, schedule string) string {
	return fmt.Sprintf(`{"id":%q,"url":%q,"body":%s,"schedule":%q}`, id, url, body, schedule)
}

// run is one benchmark run: its settings, serve and the partner.
type run struct {
	cfg     config
	serve   *serveProc
	partner *partnerProc
	tmp     string
	seq     int // distinguishes the ids of repeated scenarios
	serves  int // numbers each serve's data directory
}

// throughput enqueues n notices through the CLI, due together once the
// enqueue has finished, and times their first attempts at the partner.
func (r *run) throughput(ctx context.Context, n int) (Result, error) {
	r.seq++
	res := Result{Scenario: "throughput", Waker: r.serve.waker(), Notices: n, BodyBytes: r.cfg.body}
	// Due after the enqueue ends (it runs at tens of thousands of lines a
	// second), so that the notices are all due at once and the enqueue's
	// CPU is not mixed with delivery.
	lead := fmt.Sprintf("%.3f", 2+float64(n)/10000)
	path := filepath.Join(r.tmp, "throughput.jsonl")
	if err := writeLines(path, n, func(i int) string {
		return line(fmt.Sprintf("tp%d-%08d", r.seq, i), r.partner.URL(), body(i, r.cfg.body), lead)
	}); err != nil {
		return res, err
	}
	if err := r.partner.reset(ctx); err != nil {
		return res, err
	}
	mem0, err := r.serve.usedMemory(ctx)
	if err != nil {
		return res, err
	}
	seq0, err := r.serve.lastSeq(ctx)
	if err != nil {
		return res, err
	}
	cmds0, err := r.serve.commands(ctx)
	if err != nil {
		return res, err
	}
	a := r.serve.sample(r.partner.Pid())
	wall, enqCPU, err := r.serve.enqueueFile(ctx, path)
	if err != nil {
		return res, err
	}
	st, err := r.partner.waitArrived(ctx, int64(n), 10*time.Minute)
	if err != nil {
		return res, err
	}
	if err := r.serve.waitLogged(ctx, seq0, n, 2*time.Minute); err != nil {
		return res, err
	}
	b := r.serve.sample(r.partner.Pid())
	cmds1, err := r.serve.commands(ctx)
	if err != nil {
		return res, err
	}
	mem1, err := r.serve.usedMemory(ctx)
	if err != nil {
		return res, err
	}
	res.Delivered, res.PartnerConns = int(st.Arrived), st.Conns
	res.RedisCommandsPerNotice = math.Round(float64(cmds1-cmds0)/float64(n)*100) / 100
	if span := time.Duration(st.LastNS - st.FirstNS); span > 0 {
		res.NoticesPerSec = float64(int(float64(st.Arrived-1) / span.Seconds()))
	}
	res.EnqueuePerSec = float64(int(float64(n) / wall.Seconds()))
	cpu := perNotice(a, b, enqCPU, n)
	res.CPUPerNotice = &cpu
	res.BytesPerDelivered = float64((mem1 - mem0) / int64(n))
	res.ServePeakRSS = procfs.StatusBytes(r.serve.cmd.Process.Pid, "VmHWM")
	return res, nil
}

// lateness enqueues cfg.due notices whose first attempt the partner
// refuses and whose retry (slot 2) comes due at cfg.rate a second, and
// reports how late each retry reached the partner. With rewrite, Redis
// rewrites its AOF a quarter into the retries (lateness-aof-rewrite).
func (r *run) lateness(ctx context.Context, pending int, rewrite bool) (Result, error) {
	r.seq++
	k, rate := r.cfg.due, r.cfg.rate
	res := Result{Scenario: "lateness", Waker: r.serve.waker(), Pending: pending, Notices: k, DuePerSec: rate, BodyBytes: r.cfg.body}
	if rewrite {
		res.Scenario = "lateness-aof-rewrite"
	}
	if err := r.serve.settleAOF(ctx); err != nil {
		return res, err
	}
	rw0, err := r.serve.aofRewrites(ctx)
	if err != nil {
		return res, err
	}
	// The first attempts all come due at enqueue; the retries start once
	// those are done (assuming at least 2,500 a second) and are spread at
	// rate a second after that.
	lead := 2 + float64(k)/2500
	prefix := fmt.Sprintf("%sr%d-", retryPrefix, r.seq)
	path := filepath.Join(r.tmp, "lateness.jsonl")
	if err := writeLines(path, k, func(i int) string {
		return line(fmt.Sprintf("%s%08d", prefix, i), r.partner.URL(), body(i, r.cfg.body), fmt.Sprintf("0,%.3f", lead+float64(i)/rate))
	}); err != nil {
		return res, err
	}
	if err := r.partner.reset(ctx); err != nil {
		return res, err
	}
	seq0, err := r.serve.lastSeq(ctx)
	if err != nil {
		return res, err
	}
	a := r.serve.sample(r.partner.Pid())
	start := time.Now()
	_, enqCPU, err := r.serve.enqueueFile(ctx, path)
	if err != nil {
		return res, err
	}
	window := time.Duration((lead + float64(k)/rate) * float64(time.Second))
	if rewrite {
		at := start.Add(time.Duration((lead + float64(k)/rate/4) * float64(time.Second)))
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Until(at)): // a moment in the retries, not a condition
		}
		if _, err := r.serve.rewriteAOF(ctx); err != nil {
			return res, err
		}
	}
	if _, err := r.partner.waitArrived(ctx, int64(2*k), window+3*time.Minute); err != nil {
		return res, err
	}
	if err := r.serve.waitLogged(ctx, seq0, 2*k, 2*time.Minute); err != nil {
		return res, err
	}
	b := r.serve.sample(r.partner.Pid())
	rw1, err := r.serve.aofRewrites(ctx)
	if err != nil {
		return res, err
	}
	res.AOFRewrites = new(int)
	*res.AOFRewrites = rw1 - rw0
	arrivals, err := r.partner.arrivals(ctx)
	if err != nil {
		return res, err
	}
	dues, err := r.serve.dues(ctx, seq0, prefix)
	if err != nil {
		return res, err
	}
	late := make([]time.Duration, 0, len(arrivals))
	for _, a := range arrivals {
		if due, ok := dues[a.ID]; ok && a.N == 2 && strings.HasPrefix(a.ID, prefix) {
			late = append(late, time.UnixMicro(a.RecvUS).Sub(due))
		}
	}
	res.Delivered = len(late)
	if len(late) > 0 {
		slices.Sort(late)
		pct := func(q float64) float64 {
			return ms(late[min(int(q*float64(len(late))), len(late)-1)])
		}
		res.P50MS, res.P90MS, res.P99MS, res.MaxMS = pct(0.50), pct(0.90), pct(0.99), ms(late[len(late)-1])
	}
	cpu := perNotice(a, b, enqCPU, k)
	res.CPUPerNotice = &cpu
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()/10) / 100 }

// loadBacklog enqueues count notices due in a day through the CLI, in
// files of at most 100,000 lines, and reports the enqueue rate and the
// Redis memory each pending notice takes.
func (r *run) loadBacklog(ctx context.Context, from, count int) (Result, error) {
	res := Result{Scenario: "enqueue-backlog", Waker: r.serve.waker(), Pending: from + count, Notices: count, BodyBytes: r.cfg.body}
	mem0, err := r.serve.usedMemory(ctx)
	if err != nil {
		return res, err
	}
	a := r.serve.sample(r.partner.Pid())
	var wall, enqCPU time.Duration
	path := filepath.Join(r.tmp, "backlog.jsonl")
	for done := 0; done < count; {
		n := min(100_000, count-done)
		if err := writeLines(path, n, func(i int) string {
			return line(fmt.Sprintf("pending-%08d", from+done+i), r.partner.URL(), body(i, r.cfg.body), "86400")
		}); err != nil {
			return res, err
		}
		w, c, err := r.serve.enqueueFile(ctx, path)
		if err != nil {
			return res, err
		}
		wall, enqCPU, done = wall+w, enqCPU+c, done+n
	}
	b := r.serve.sample(r.partner.Pid())
	mem1, err := r.serve.usedMemory(ctx)
	if err != nil {
		return res, err
	}
	res.EnqueuePerSec = float64(int(float64(count) / wall.Seconds()))
	cpu := perNotice(a, b, enqCPU, count)
	res.CPUPerNotice = &cpu
	res.BytesPerPending = float64((mem1-mem0)/int64(count) - int64(r.cfg.body))
	return res, nil
}
