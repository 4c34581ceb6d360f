package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// ErrEventsOff is returned by CheckEvents when the server does not publish
// expired keyspace events and notifier may not turn them on.
var ErrEventsOff = errors.New("redis does not publish expired keyspace events")

// Redis holds pending notices: it implements notifier.Queue and
// notifier.Events, and the enqueue side used by the CLI.
type Redis struct {
	rdb  redis.UniversalClient
	db   int
	keys Keys
	log  *slog.Logger
	// Now is the clock; due scores and leases are compared with it.
	Now func() time.Time
	// DedupWindow is how long an ended notice's id is remembered (default
	// 24 h): enqueue refuses an id delivered within it. Negative: never.
	DedupWindow time.Duration
	// CanaryInterval is how often Listen checks that events still flow by
	// setting a key to expire at once and waiting for its event (default
	// 5 s); CanaryDeadline is how long the event may take (default 2 s).
	CanaryInterval, CanaryDeadline time.Duration
	// FarHorizon is how far ahead an attempt must be due to wait in the
	// payload table rather than the due index (default 30 s; see far.go).
	// Every sweep promotes those due within it, so it must be well above
	// the sweep interval.
	FarHorizon time.Duration

	instance string // random, so claim tokens of different processes never collide
	claims   atomic.Uint64
	foreign  atomic.Uint64
	heardAt  atomic.Int64 // Unix ns of the last proof that Listen's subscription works
	promoted atomic.Int64 // Unix ns of the last promotion of far attempts
	logged   sync.Once
}

var (
	_ notifier.Queue        = (*Redis)(nil)
	_ notifier.Events       = (*Redis)(nil)
	_ notifier.Notices      = (*Redis)(nil)
	_ notifier.PartnerAdmin = (*Redis)(nil)
	_ notifier.Submitter    = (*Redis)(nil)
	_ notifier.Published    = (*Redis)(nil)
)

// NewRedis returns a store on rdb whose keys start with prefix ("" means
// DefaultPrefix). A nil log discards.
//
// On a Redis Cluster client (*redis.ClusterClient) it uses the sharded key
// layout (ClusterShards shards, see Keys) and listens to every master.
func NewRedis(rdb redis.UniversalClient, prefix string, log *slog.Logger) *Redis {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	r := &Redis{rdb: rdb, keys: Keys{Prefix: prefix}, log: log, Now: time.Now, instance: hex.EncodeToString(b[:]),
		CanaryInterval: 5 * time.Second, CanaryDeadline: 2 * time.Second}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		r.keys.Shards = ClusterShards
	case *redis.Client:
		r.db = c.Options().DB
	}
	return r
}

// Keys returns the key names this store uses.
func (r *Redis) Keys() Keys { return r.keys }

// CheckEvents makes sure Redis publishes expired keyspace events (flags E and
// x, or A which includes x). If they are off and set is true it turns them on
// with CONFIG SET, keeping the flags already there; otherwise, or if CONFIG is
// refused (managed Redis), it returns an error wrapping ErrEventsOff that says
// how to enable them.
func (r *Redis) CheckEvents(ctx context.Context, set bool) error {
	cc, ok := r.rdb.(*redis.ClusterClient)
	if !ok {
		return r.checkEvents(ctx, r.rdb, "", set)
	}
	// The setting is per node and not replicated: every master needs it.
	var mu sync.Mutex
	var errs []error
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if err := r.checkEvents(ctx, node, node.Options().Addr, set); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return nil
	})
	return errors.Join(err, errors.Join(errs...))
}

func (r *Redis) checkEvents(ctx context.Context, node redis.Cmdable, name string, set bool) error {
	on := ""
	if name != "" {
		on = " on " + name
	}
	vals, err := node.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return fmt.Errorf("%w%s: CONFIG GET notify-keyspace-events: %v; enable them with `redis-cli config set notify-keyspace-events Ex` (or your provider's parameter group)", ErrEventsOff, on, err)
	}
	flags := vals["notify-keyspace-events"]
	if hasExpiredEvents(flags) {
		return nil
	}
	help := fmt.Sprintf("notify-keyspace-events is %q%s, notifier needs \"Ex\": run `redis-cli config set notify-keyspace-events %s` or set it in redis.conf / your provider's parameter group", flags, on, flags+"Ex")
	if !set {
		return fmt.Errorf("%w: %s", ErrEventsOff, help)
	}
	if err := node.ConfigSet(ctx, "notify-keyspace-events", flags+"Ex").Err(); err != nil {
		return fmt.Errorf("%w: %s (CONFIG SET refused: %v)", ErrEventsOff, help, err)
	}
	r.log.Warn("enabled expired keyspace events", "node", name, "was", flags, "now", flags+"Ex")
	return nil
}

func hasExpiredEvents(flags string) bool {
	return strings.ContainsRune(flags, 'E') && strings.ContainsAny(flags, "xA")
}

// SetDefaultSchedule publishes the schedule that enqueue gives notices that
// name none.
func (r *Redis) SetDefaultSchedule(ctx context.Context, s backoff.Schedule) error {
	if err := r.rdb.Set(ctx, r.keys.DefaultSchedule(), s.String(), 0).Err(); err != nil {
		return fmt.Errorf("publish default schedule: %w", err)
	}
	return nil
}

// Served reports whether a serve has published its settings to this Redis
// (its default schedule): without one, nothing enqueued is delivered.
func (r *Redis) Served(ctx context.Context) (bool, error) {
	n, err := r.rdb.Exists(ctx, r.keys.DefaultSchedule()).Result()
	if err != nil {
		return false, fmt.Errorf("read default schedule: %w", err)
	}
	return n == 1, nil
}

// DefaultSchedule returns the schedule published by serve, or backoff.Default
// if none was.
func (r *Redis) DefaultSchedule(ctx context.Context) (backoff.Schedule, error) {
	v, err := r.rdb.Get(ctx, r.keys.DefaultSchedule()).Result()
	if errors.Is(err, redis.Nil) {
		return backoff.Default, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read default schedule: %w", err)
	}
	s, err := backoff.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("default schedule in %s: %w", r.keys.DefaultSchedule(), err)
	}
	return s, nil
}
