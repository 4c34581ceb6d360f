package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// load enqueues count backlog notices due in an hour and measures the
// enqueue rate and the memory each costs.
func load(ctx context.Context, cfg Config, q *store.Redis, from, count int) (Result, error) {
	before, err := usedMemory(ctx, cfg.Redis)
	if err != nil {
		return Result{}, err
	}
	sched, _ := backoff.Parse("1h")
	b := body(cfg.Body)
	start := time.Now()
	batch := make([]notifier.Notice, 0, 1000)
	for i := from; i < from+count; i++ {
		batch = append(batch, notifier.Notice{ID: fmt.Sprintf("backlog-%08d", i), URL: "http://127.0.0.1:1/never", Body: b, Schedule: sched, Stamp: time.Now().Truncate(time.Millisecond)})
		if len(batch) == cap(batch) || i == from+count-1 {
			if err := enqueueAll(ctx, q, batch); err != nil {
				return Result{}, err
			}
			batch = batch[:0]
		}
	}
	took := time.Since(start)
	after, err := usedMemory(ctx, cfg.Redis)
	if err != nil {
		return Result{}, err
	}
	settled, err := afterReceipts(ctx, cfg.Redis, q.Keys())
	if err != nil {
		return Result{}, err
	}
	trig, err := triggerCost(ctx, cfg, q.Keys(), from, count)
	if err != nil {
		return Result{}, err
	}
	return Result{Scenario: "enqueue-backlog", Notices: count, EnqueuePerSec: float64(count) / took.Seconds(),
		BytesPerPending: float64(settled-before)/float64(count) - float64(len(b)), BytesPerTrigger: trig,
		BytesPerReceipt: float64(after-settled) / float64(count)}, nil
}

// triggerCost measures what count bare trigger keys (the integer 1, PX an
// hour, named as load names its notices' first triggers) cost, in database
// 15 so that its key tables grow from empty as the backlog's did. It
// deletes what it wrote, and only that.
func triggerCost(ctx context.Context, cfg Config, keys store.Keys, from, count int) (float64, error) {
	single, ok := cfg.Redis.(*redis.Client)
	if !ok {
		return 0, nil
	}
	opts := *single.Options()
	opts.DB = 15
	rdb := redis.NewClient(&opts)
	defer rdb.Close()
	scratch := store.Keys{Prefix: keys.Prefix + "t"}
	defer cleanup(context.WithoutCancel(ctx), rdb, scratch)
	before, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	stamp := time.Now().Truncate(time.Millisecond)
	pipe := rdb.Pipeline()
	for i := from; i < from+count; i++ {
		// The same length as the backlog's keys: the prefix only gains "t".
		pipe.Set(ctx, scratch.Trigger(notifier.Trigger{ID: fmt.Sprintf("backlog-%08d", i), Stamp: stamp, N: 1}), 1, time.Hour)
		if pipe.Len() == 1000 || i == from+count-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, fmt.Errorf("bare trigger keys: %w", err)
			}
		}
	}
	after, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(count), nil
}

// enqueueFile times notifier.EnqueueLines, the code behind `enqueue
// --file`, on cfg.File lines with cfg.Body-byte bodies due in an hour.
func enqueueFile(ctx context.Context, cfg Config, q *store.Redis) (Result, error) {
	var b strings.Builder
	body, _ := json.Marshal(string(body(cfg.Body)))
	for i := range cfg.File {
		fmt.Fprintf(&b, `{"id":"file-%08d","url":"http://127.0.0.1:1/never","body":%s,"schedule":"1h"}`+"\n", i, body)
	}
	input := b.String()
	start := time.Now()
	n, err := notifier.EnqueueLines(ctx, strings.NewReader(input), q, backoff.Default, time.Now, func(*notifier.LineError) {})
	if err != nil {
		return Result{}, err
	}
	return Result{Scenario: "enqueue-file", Notices: n, EnqueuePerSec: float64(n) / time.Since(start).Seconds()}, nil
}
