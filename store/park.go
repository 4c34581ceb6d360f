package store

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// ParkedPartners implements notifier.Pauser: the names of the partners with
// attempts parked that the published config (the last serve started) does
// not name. Serves sharing a Redis should share a config; while they do
// not (a rolling change), a partner still published is left to the serves
// that know it.
func (r *Redis) ParkedPartners(ctx context.Context) ([]string, error) {
	names, err := r.parkedNames(ctx)
	if err != nil {
		return nil, err
	}
	published, err := r.rdb.HKeys(ctx, r.keys.Partners()).Result()
	if err != nil {
		return nil, fmt.Errorf("read partners: %w", err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return slices.Contains(published, n) }), nil
}

// parkedNames returns every name in the shards' parked names.
func (r *Redis) parkedNames(ctx context.Context) ([]string, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, r.keys.ShardCount())
	for s := range cmds {
		cmds[s] = pipe.SMembers(ctx, r.keys.ParkedNames(s))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read parked partners: %w", err)
	}
	var names []string
	for _, c := range cmds {
		names = append(names, c.Val()...)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// RegisterParked adds the named partners that have attempts parked to the
// parked names, for parked sets written before serve kept those names (an
// older release): serve calls it with the partners the previous serve
// published, before it publishes its own.
func (r *Redis) RegisterParked(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	n := r.keys.ShardCount()
	pipe := r.rdb.Pipeline()
	cards := make([]*redis.IntCmd, len(names)*n)
	for i, name := range names {
		for s := range n {
			cards[i*n+s] = pipe.ZCard(ctx, r.keys.ParkedIn(s, name))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("read parked sets: %w", err)
	}
	pipe = r.rdb.Pipeline()
	for i, name := range names {
		for s := range n {
			if cards[i*n+s].Val() > 0 {
				pipe.SAdd(ctx, r.keys.ParkedNames(s), name)
			}
		}
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("register parked partners: %w", err)
	}
	return nil
}

// parkingPartners names every partner whose parked sets may hold attempts:
// those serve published (its config) and those recorded as having parked
// attempts (which includes partners that have left the config since).
func (r *Redis) parkingPartners(ctx context.Context) ([]string, error) {
	published, err := r.rdb.HKeys(ctx, r.keys.Partners()).Result()
	if err != nil {
		return nil, fmt.Errorf("read partners: %w", err)
	}
	parked, err := r.parkedNames(ctx)
	if err != nil {
		return nil, err
	}
	names := append(published, parked...)
	slices.Sort(names)
	return slices.Compact(names), nil
}

// Settings is what serve publishes to Redis for enqueue, the CLI and other
// serves: its default schedule, its URL policy and its partners' summaries
// (name -> JSON).
type Settings struct {
	Schedule backoff.Schedule
	Policy   notifier.PolicySummary
	Partners map[string]string
}

// Publish checks that Redis publishes expired events (turning them on if it
// may) and publishes s. The partners of the previous config are made
// findable first, in case they have attempts parked.
func (r *Redis) Publish(ctx context.Context, s Settings) error {
	if err := r.CheckEvents(ctx, true); err != nil {
		return err
	}
	if err := r.SetDefaultSchedule(ctx, s.Schedule); err != nil {
		return err
	}
	if err := r.SetURLPolicy(ctx, s.Policy); err != nil {
		return err
	}
	if old, err := r.PublishedPartners(ctx); err == nil {
		if err := r.RegisterParked(ctx, slices.Collect(maps.Keys(old))); err != nil {
			return err
		}
	}
	return r.PublishPartners(ctx, s.Partners)
}
