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
// from half to the whole of recordLoad (store/records.go, 40), as the
// table's buckets range between its splits.
const floorBucketPairs = 20

// floorPipeline is how many lines' commands go to Redis in one round
// trip: enough that the round trips cost Redis nothing worth counting.
const floorPipeline = 256

// enqueueFloor is the enqueue-floor scenario: what Redis spends per line of
// `enqueue --file` on the commands the enqueue script runs for each notice,
// sent plain (pipelined, no Lua), on a private redis-server started with
// serve's own settings (store.StartServer: AOF on, appendfsync everysec).
// Per line: LPOS for the new id in its bucket (absent: a scan of the whole
// bucket), SMISMEMBER for it in a dedup set, RPUSH of the id and its
// payload (the size the enqueue stores) to the bucket, SET of its trigger
// key with PX, and ZADD to the due index. The enqueue script cannot cost
// Redis less per line: it runs these commands and more (the table's
// state, receipts, bucket splits) and Lua's own work around them.
// cpu_us_per_notice.redis is redis-server's CPU per line;
// enqueue_per_sec is the lines' rate through the pipeline.
func (r *run) enqueueFloor(ctx context.Context, n int) (Result, error) {
	res := Result{Scenario: "enqueue-floor", Notices: n, BodyBytes: r.cfg.body}
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
	// The buckets' earlier notices, then a dedup set to look in.
	if err := send(0, n, func(p redis.Pipeliner, i int) {
		p.RPush(ctx, bucket(i), fmt.Sprintf("old-%08d", i), payload)
	}); err != nil {
		return res, err
	}
	if err := rdb.SAdd(ctx, keys.DedupNodes("")+"0", "delivered-1", "delivered-2").Err(); err != nil {
		return res, err
	}
	c0, t0 := cpuTime(pid), time.Now()
	if err := send(0, n, func(p redis.Pipeliner, i int) {
		t := notifier.Trigger{ID: fmt.Sprintf("fl-%08d", i), Stamp: stamp, N: 1}
		p.LPos(ctx, bucket(i), t.ID, redis.LPosArgs{})
		p.SMIsMember(ctx, keys.DedupNodes("")+"0", t.ID)
		p.RPush(ctx, bucket(i), t.ID, payload)
		p.Do(ctx, "SET", keys.Trigger(t), 1, "PX", time.Hour.Milliseconds())
		p.ZAdd(ctx, keys.Due(), redis.Z{Score: float64(stamp.UnixMilli()), Member: keys.Member(t)})
	}); err != nil {
		return res, err
	}
	wall, c1 := time.Since(t0), cpuTime(pid)
	// What the lines should have left: n triggers and n due entries
	// beside the buckets and the dedup set.
	due, err := rdb.ZCard(ctx, keys.Due()).Result()
	if err != nil {
		return res, err
	}
	size, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return res, err
	}
	if want := int64(n + min(n, buckets) + 2); due != int64(n) || size != want {
		return res, fmt.Errorf("enqueue floor: %d due entries and %d keys, want %d and %d", due, size, n, want)
	}
	res.Delivered = n
	res.EnqueuePerSec = float64(int(float64(n) / wall.Seconds()))
	us := round1(float64((c1 - c0).Microseconds()) / float64(n))
	res.CPUPerNotice = &CPU{Redis: us, Total: us}
	return res, nil
}
