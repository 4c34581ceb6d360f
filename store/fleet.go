package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// FleetLog appends every attempt of one serve to the fleet's capped Redis
// stream, so `notifier tail --fleet` follows all serve hosts at once while
// each keeps its own SQLite log. Appends are batched and best effort: when
// Redis lags, attempts are dropped from the stream (never from SQLite) and
// counted.
type FleetLog struct {
	rdb     redis.UniversalClient
	key     string
	host    string
	max     int64
	log     *slog.Logger
	queue   chan notifier.Attempt
	dropped atomic.Int64
}

// DefaultFleetLogMax is about how many attempts the stream keeps.
const DefaultFleetLogMax = 100_000

// NewFleetLog returns a FleetLog on q's Redis that keeps about max
// attempts (DefaultFleetLogMax if max <= 0).
func NewFleetLog(q *Redis, max int64, log *slog.Logger) *FleetLog {
	if max <= 0 {
		max = DefaultFleetLogMax
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	host += "/" + strconv.Itoa(os.Getpid()) // several serves may share a host
	return &FleetLog{rdb: q.rdb, key: q.keys.Attempts(), host: host, max: max, log: log, queue: make(chan notifier.Attempt, 8192)}
}

// Observe queues attempt a for the stream; it never blocks (wire it as
// Dispatcher.Observe).
func (f *FleetLog) Observe(a notifier.Attempt) {
	a.Ended = nil
	select {
	case f.queue <- a:
	default:
		f.dropped.Add(1)
	}
}

// Dropped counts attempts the stream missed because Redis lagged.
func (f *FleetLog) Dropped() int64 { return f.dropped.Load() }

// Run appends queued attempts until ctx ends, then what is still queued.
func (f *FleetLog) Run(ctx context.Context) error {
	batch := make([]notifier.Attempt, 0, 256)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		pipe := f.rdb.Pipeline()
		for _, a := range batch {
			b, err := notifier.MarshalAttempt(a)
			if err != nil {
				continue
			}
			pipe.XAdd(wctx, &redis.XAddArgs{Stream: f.key, MaxLen: f.max, Approx: true,
				Values: []any{"host", f.host, "partner", a.Partner, "attempt", b}})
		}
		if _, err := pipe.Exec(wctx); err != nil {
			f.dropped.Add(int64(len(batch)))
			f.log.Warn("fleet log append failed; attempts stay in the local log", "count", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case a := <-f.queue:
			batch = append(batch, a)
		drain:
			for len(batch) < cap(batch) {
				select {
				case a := <-f.queue:
					batch = append(batch, a)
				default:
					break drain
				}
			}
			flush()
		case <-ctx.Done():
			for {
				select {
				case a := <-f.queue:
					batch = append(batch, a)
					if len(batch) == cap(batch) {
						flush()
					}
				default:
					flush()
					return nil
				}
			}
		}
	}
}

// FollowFleet calls fn with the last n attempts of the fleet stream (0:
// none), oldest first, then, if follow is set, with every new one until ctx
// ends (it then returns nil) or fn fails. Not following, it returns
// notifier.ErrNoFleetStream if the stream does not exist.
func (r *Redis) FollowFleet(ctx context.Context, n int64, follow bool, fn func(notifier.FleetAttempt) error) error {
	// Follow from the newest entry's id rather than "$": "$" at each
	// blocking read would skip what arrived between two reads.
	last := "0-0"
	if newest, err := r.rdb.XRevRangeN(ctx, r.keys.Attempts(), "+", "-", 1).Result(); err != nil {
		return fmt.Errorf("read fleet log: %w", err)
	} else if len(newest) > 0 {
		last = newest[0].ID
	} else if !follow {
		switch n, err := r.rdb.Exists(ctx, r.keys.Attempts()).Result(); {
		case err != nil:
			return fmt.Errorf("read fleet log: %w", err)
		case n == 0:
			return notifier.ErrNoFleetStream
		}
	}
	if n > 0 {
		msgs, err := r.rdb.XRevRangeN(ctx, r.keys.Attempts(), "+", "-", n).Result()
		if err != nil {
			return fmt.Errorf("read fleet log: %w", err)
		}
		for i := len(msgs) - 1; i >= 0; i-- {
			if err := fn(fleetAttempt(msgs[i])); err != nil {
				return err
			}
		}
	}
	for follow {
		streams, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{r.keys.Attempts(), last}, Block: time.Second, Count: 1000}).Result()
		if ctx.Err() != nil {
			return nil
		}
		if err == redis.Nil {
			continue
		}
		if err != nil {
			return fmt.Errorf("follow fleet log: %w", err)
		}
		for _, s := range streams {
			for _, m := range s.Messages {
				if err := fn(fleetAttempt(m)); err != nil {
					return err
				}
				last = m.ID
			}
		}
	}
	return nil
}

// fleetAttempt decodes a stream entry; a malformed one (another writer's)
// comes back with only its host and an error outcome.
func fleetAttempt(m redis.XMessage) notifier.FleetAttempt {
	host, _ := m.Values["host"].(string)
	raw, _ := m.Values["attempt"].(string)
	var j notifier.AttemptJSON
	if err := json.Unmarshal([]byte(raw), &j); err != nil {
		return notifier.FleetAttempt{Host: host, Attempt: notifier.Attempt{Outcome: notifier.Error, Error: "unreadable fleet log entry " + m.ID}}
	}
	a := j.Attempt()
	a.Partner, _ = m.Values["partner"].(string)
	return notifier.FleetAttempt{Host: host, Attempt: a}
}
