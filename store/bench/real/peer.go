package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// peerSummary is the last line of a peer comparison.
type peerSummary struct {
	Scenario string `json:"scenario"`
	// NotifierPerSec and AsynqPerSec are each round's throughput, in the
	// order run; Ratio is notifier's median over asynq's.
	NotifierPerSec []float64 `json:"notifier_per_sec"`
	AsynqPerSec    []float64 `json:"asynq_per_sec"`
	Ratio          float64   `json:"ratio"`
	// NotifierCPU and AsynqCPU are the median total CPU per delivered
	// notice of every process (delivery, Redis, partner, enqueue), in µs.
	NotifierCPU float64 `json:"notifier_cpu_us_per_notice"`
	AsynqCPU    float64 `json:"asynq_cpu_us_per_notice"`
	Notices     int     `json:"notices"`
	Cores       int     `json:"cores"`
}

// runPeer runs notifier's throughput scenario and the asynq program on the
// same job, interleaved A B A B for cfg.rounds rounds, against one partner
// process, and prints each run and the ratio of the medians.
func runPeer(ctx context.Context, cfg config, log *slog.Logger) error {
	r, cleanup, err := setup(ctx, cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	version := r.version(ctx)
	sum := peerSummary{Scenario: "peer-summary", Notices: cfg.throughput}
	var ncpu, acpu []float64
	for round := 1; round <= cfg.rounds; round++ {
		log.Info("notifier", "round", round, "notices", cfg.throughput)
		res, err := r.throughput(ctx, cfg.throughput)
		if err != nil {
			return fmt.Errorf("notifier round %d: %w", round, err)
		}
		emit(res, version)
		sum.NotifierPerSec = append(sum.NotifierPerSec, res.NoticesPerSec)
		ncpu = append(ncpu, res.CPUPerNotice.Total)

		log.Info("asynq", "round", round, "notices", cfg.throughput)
		res, err = r.asynq(ctx, round)
		if err != nil {
			return fmt.Errorf("asynq round %d: %w", round, err)
		}
		emit(res, version)
		sum.AsynqPerSec = append(sum.AsynqPerSec, res.NoticesPerSec)
		acpu = append(acpu, res.CPUPerNotice.Total)
	}
	if a := median(sum.AsynqPerSec); a > 0 {
		sum.Ratio = math.Round(median(sum.NotifierPerSec)/a*100) / 100
	}
	// An even count's median is the mean of two: rounded like every
	// other CPU figure.
	sum.NotifierCPU, sum.AsynqCPU, sum.Cores = round1(median(ncpu)), round1(median(acpu)), runtime.NumCPU()
	b, _ := json.Marshal(sum)
	fmt.Printf("%s\n", b)
	return nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// asynq runs the asynq program once: its own redis-server (a private one,
// with the production settings serve gives its embedded Redis), N tasks
// enqueued, then delivered to the partner, each attempt logged to SQLite.
// Its CPU is read from the moment the tasks are enqueued.
func (r *run) asynq(ctx context.Context, round int) (Result, error) {
	n := r.cfg.throughput
	res := Result{Scenario: "throughput", Tool: "asynq", Notices: n, BodyBytes: r.cfg.body}
	dir := filepath.Join(r.tmp, fmt.Sprintf("asynq-%d", round))
	srv, err := store.StartServer(ctx, store.ServerConfig{Dir: dir})
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	info, err := rdb.Info(ctx, "server").Result()
	rdb.Close()
	if err != nil {
		return res, fmt.Errorf("asynq's redis INFO: %w", err)
	}
	redisPid, _ := strconv.Atoi(infoField(info, "process_id"))
	if err := r.partner.reset(ctx); err != nil {
		return res, err
	}
	cmd := exec.CommandContext(ctx, r.cfg.peer, "-redis", srv.Socket, "-url", r.partner.URL(),
		"-n", strconv.Itoa(n), "-db", filepath.Join(dir, "attempts.db"), "-concurrency", strconv.Itoa(r.cfg.concurrency),
		"-body", strconv.Itoa(r.cfg.body), "-prefix", fmt.Sprintf("asynq%d", round))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return res, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", r.cfg.peer, err)
	}
	out := bufio.NewReader(outPipe)
	fail := func(err error) (Result, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return res, err
	}
	if l, err := out.ReadString('\n'); err != nil || strings.TrimSpace(l) != "enqueued" {
		return fail(fmt.Errorf("asynq program: %q, %v", l, err))
	}
	pid := cmd.Process.Pid
	a := cpuSample{serve: cpuTime(pid), redis: cpuTime(redisPid), partner: cpuTime(r.partner.Pid())}
	if _, err := in.Write([]byte("go\n")); err != nil {
		return fail(err)
	}
	last, err := out.ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("asynq program: %v", err))
	}
	b := cpuSample{redis: cpuTime(redisPid), partner: cpuTime(r.partner.Pid())}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("asynq program: %w", err)
	}
	b.serve = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var got struct{ Delivered, Logged int64 }
	if err := json.Unmarshal([]byte(last), &got); err != nil || got.Logged < int64(n) {
		return res, fmt.Errorf("asynq program: %s", strings.TrimSpace(last))
	}
	st, err := r.partner.stats(ctx)
	if err != nil {
		return res, err
	}
	res.Delivered, res.PartnerConns = int(got.Delivered), st.Conns
	if span := time.Duration(st.LastNS - st.FirstNS); span > 0 {
		res.NoticesPerSec = float64(int(float64(st.Arrived-1) / span.Seconds()))
	}
	// The program's CPU up to "enqueued" is its enqueue's.
	cpu := perNotice(a, b, a.serve, n)
	res.CPUPerNotice = &cpu
	return res, nil
}
