package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// floorBucketPairs is how many notices each bucket of the enqueue-floor
// scenario holds before its lines, and adds during them: its buckets go
// from 20 to 40 notices, fewer than the table's (store/records.go), whose
// buckets hold recordLoad (40) on average and range wider between
// splits. So the floor's LPOS scans are, if anything, shorter than the
// script's.
const floorBucketPairs = 20

// floorPipeline is how many lines' commands go to Redis in one round
// trip: enough that the round trips cost Redis nothing worth counting.
const floorPipeline = 256

// floorScriptBatch is how many notices one enqueue script stores
// (enqueueBatchNotices in store/enqueue.go): the script adds them to the
// due index with one ZADD, as the floor does.
const floorScriptBatch = 64

// enqueueFloor is the enqueue-floor scenario: what Redis spends per line of
// `enqueue --file` on commands the enqueue script runs for each notice in
// every case, sent plain (pipelined, no Lua), on a private redis-server
// started with serve's own settings (store.StartServer: AOF on,
// appendfsync everysec). Per line: LPOS for the new id in its bucket
// (absent: a scan of the whole bucket), RPUSH of the id and its payload
// (the size the enqueue stores) to the bucket, SET of its trigger key with
// PX; and per 64 lines, as per script call, one ZADD of their due-index
// entries. The enqueue script cannot cost Redis less per line: it runs
// these commands and more (the payload keys' MGET, the table's state, the
// dedup lookups once a generation is live, receipts, bucket splits) and
// Lua's own work around them. cpu_us_per_notice.redis is redis-server's
// CPU per line; enqueue_per_sec is the lines' rate through the pipeline.
// It checks, from INFO commandstats and what is stored, that Redis ran
// every command it counts, and fails otherwise.
func (r *run) enqueueFloor(ctx context.Context, n int) (Result, error) {
	res := Result{Scenario: "enqueue-floor", Notices: n, BodyBytes: r.cfg.body}
	if n < 1 {
		return res, fmt.Errorf("enqueue floor: %d lines", n)
	}
	dir, err := os.MkdirTemp(r.tmp, "floor")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	srv, err := store.StartServer(ctx, store.ServerConfig{Dir: dir})
	if err != nil {
		return res, err
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return res, err
	}
	pid, _ := strconv.Atoi(infoField(info, "process_id"))
	if pid <= 0 {
		return res, errors.New("enqueue floor: redis-server gave no process_id")
	}
	keys := store.Keys{Prefix: "noticeId"}
	buckets := max(n/floorBucketPairs, 1)
	bucket := func(i int) string { return keys.RecordsShard(0) + ":" + strconv.Itoa(i%buckets) }
	// A payload of the size enqueue stores: the body and a header of
	// about the URL's size; the leading byte keeps LPOS from matching it.
	payload := "\x01" + strings.Repeat("h", len(r.partner.URL())+16) + body(0, r.cfg.body)
	stamp := time.Now().Add(time.Hour)
	send := func(from, to int, line func(p redis.Pipeliner, i int)) error {
		for lo := from; lo < to; lo += floorPipeline {
			p := rdb.Pipeline()
			for i := lo; i < min(lo+floorPipeline, to); i++ {
				line(p, i)
			}
			cmds, _ := p.Exec(ctx)
			for _, c := range cmds {
				// LPOS answers nil for the absent id, as it should.
				if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
					return fmt.Errorf("enqueue floor: %s: %w", c.Name(), err)
				}
			}
		}
		return nil
	}
	// The buckets' earlier notices.
	if err := send(0, n, func(p redis.Pipeliner, i int) {
		p.RPush(ctx, bucket(i), fmt.Sprintf("old-%08d", i), payload)
	}); err != nil {
		return res, err
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		return res, err
	}
	var due []redis.Z
	c0, t0 := cpuTime(pid), time.Now()
	if err := send(0, n, func(p redis.Pipeliner, i int) {
		t := notifier.Trigger{ID: fmt.Sprintf("fl-%08d", i), Stamp: stamp, N: 1}
		p.LPos(ctx, bucket(i), t.ID, redis.LPosArgs{})
		p.RPush(ctx, bucket(i), t.ID, payload)
		p.Do(ctx, "SET", keys.Trigger(t), 1, "PX", time.Hour.Milliseconds())
		due = append(due, redis.Z{Score: float64(stamp.UnixMilli()), Member: keys.Member(t)})
		if len(due) == floorScriptBatch || i == n-1 {
			p.ZAdd(ctx, keys.Due(), due...)
			due = nil
		}
	}); err != nil {
		return res, err
	}
	wall, c1 := time.Since(t0), cpuTime(pid)
	if err := floorCheck(ctx, rdb, keys, n, buckets); err != nil {
		return res, err
	}
	res.Delivered = n
	res.EnqueuePerSec = float64(int(float64(n) / wall.Seconds()))
	us := round1(float64((c1 - c0).Microseconds()) / float64(n))
	res.CPUPerNotice = &CPU{Redis: us, Total: us}
	return res, nil
}

// floorCheck says whether the enqueue floor's lines did what it counts:
// Redis ran an LPOS, a SET and an RPUSH per line and a ZADD per 64 (INFO
// commandstats, reset before them), and n triggers and n due entries are
// stored beside the buckets (all of them used: n ≥ 1 lines fill at least
// one, and there are at most n).
func floorCheck(ctx context.Context, rdb *redis.Client, keys store.Keys, n, buckets int) error {
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return err
	}
	calls := commandsByName(stats)
	want := map[string]int64{"lpos": int64(n), "set": int64(n), "rpush": int64(n),
		"zadd": int64((n + floorScriptBatch - 1) / floorScriptBatch)}
	for name, w := range want {
		if calls[name] != w {
			return fmt.Errorf("enqueue floor: Redis ran %s %d times, want %d", name, calls[name], w)
		}
	}
	due, err := rdb.ZCard(ctx, keys.Due()).Result()
	if err != nil {
		return err
	}
	size, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return err
	}
	if want := int64(n + buckets + 1); due != int64(n) || size != want {
		return fmt.Errorf("enqueue floor: %d due entries and %d keys, want %d and %d", due, size, n, want)
	}
	return nil
}
