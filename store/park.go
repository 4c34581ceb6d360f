package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

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

// findParked returns the partner whose parked set holds an attempt of
// notice n, and that attempt; "" and 0 if none is parked. A notice's
// partner may have been matched by URL prefix at delivery, so when the
// notice does not name one the parked set of every partner that may have
// parked it is looked at.
func (r *Redis) findParked(ctx context.Context, id string, n *notifier.Notice) (partner string, attempt int, err error) {
	names := []string{n.Partner}
	if n.Partner == "" {
		if names, err = r.parkingPartners(ctx); err != nil {
			return "", 0, err
		}
	}
	// One round trip for every candidate (partner, attempt).
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.FloatCmd, 0, len(names)*len(n.Schedule))
	for _, name := range names {
		for k := 1; k <= len(n.Schedule); k++ {
			cmds = append(cmds, pipe.ZScore(ctx, r.keys.ParkedOf(id, name), r.keys.Member(notifier.Trigger{ID: id, Stamp: n.Stamp, N: k})))
		}
	}
	if len(cmds) == 0 {
		return "", 0, nil
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, c := range cmds {
		switch err := c.Err(); {
		case err == nil:
			return names[i/len(n.Schedule)], i%len(n.Schedule) + 1, nil
		case !errors.Is(err, redis.Nil):
			return "", 0, fmt.Errorf("read parked set: %w", err)
		}
	}
	return "", 0, nil
}

// parkedAttempt is the Pending of stored notice n when one of its attempts
// is parked, with why: the partner it waits for, and that partner's pause
// reason and time from its state hash. ok is false if none is parked.
func (r *Redis) parkedAttempt(ctx context.Context, n notifier.Notice) (p notifier.Pending, ok bool, err error) {
	partner, k, err := r.findParked(ctx, n.ID, &n)
	if err != nil || partner == "" {
		return p, false, err
	}
	h, err := r.rdb.HMGet(ctx, r.keys.Partner(partner), "reason", "since").Result()
	if err != nil {
		return p, false, fmt.Errorf("read partner %s: %w", partner, err)
	}
	why := &notifier.Parked{Partner: partner}
	why.Reason, _ = h[0].(string)
	if s, _ := h[1].(string); s != "" {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms > 0 {
			why.Since = time.UnixMilli(ms).UTC()
		}
	}
	due, _ := n.Schedule.Due(n.Stamp, k)
	return notifier.Pending{Notice: n, N: k, Due: due, Parked: why}, true, nil
}
