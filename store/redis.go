package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// ErrSubscriptionDead is returned by Listen when the liveness canary did
// not come back: the subscription forwards nothing (a half-dead connection,
// or keyspace events switched off). The caller listens again and sweeps.
var ErrSubscriptionDead = errors.New("expired-event subscription is not delivering")

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

	instance string // random, so claim tokens of different processes never collide
	claims   atomic.Uint64
	foreign  atomic.Uint64
	heardAt  atomic.Int64 // Unix ns of the last proof that Listen's subscription works
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

// LastHeard is when Listen last had proof that its subscription delivers
// events (it subscribed, its canary came back, or any expired event
// arrived); zero if it never had. With the canary every CanaryInterval, a
// live subscription is never more than about CanaryInterval+CanaryDeadline
// old.
func (r *Redis) LastHeard() time.Time {
	if ns := r.heardAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// ForeignKeys counts expired events for keys that are not trigger keys of
// this prefix (other applications' keys, malformed keys).
func (r *Redis) ForeignKeys() uint64 { return r.foreign.Load() }

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

// Enqueue stores notices and arms their first attempts, pipelined. It returns
// one error per notice: nil when it is stored, else one wrapping
// notifier.ErrDuplicate or notifier.ErrInvalidNotice, or, when Redis failed
// (the second result), notifier.ErrNotStored or notifier.ErrUnconfirmed. So
// the per-notice results always say exactly which notices are stored, bar
// the unconfirmed ones.
func (r *Redis) Enqueue(ctx context.Context, notices []notifier.Notice) ([]error, error) {
	return r.enqueue(ctx, notices, false)
}

// Resend is Enqueue for an operator's explicit re-send (`notifier retry`,
// `replay`): it also replaces the tombstone of a notice delivered within the
// dedup window. A pending notice is still refused.
func (r *Redis) Resend(ctx context.Context, notices []notifier.Notice) ([]error, error) {
	return r.enqueue(ctx, notices, true)
}

func (r *Redis) enqueue(ctx context.Context, notices []notifier.Notice, force bool) ([]error, error) {
	forced := "0"
	if force {
		forced = "1"
	}
	policy, maxBody, err := r.policy(ctx)
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(notices))
	calls := make([]scriptCall, 0, len(notices))
	idx := make([]int, 0, len(notices))
	for i := range notices {
		n := &notices[i]
		if err := n.Validate(); err != nil {
			errs[i] = err
			continue
		}
		if maxBody > 0 && len(n.Body) > maxBody {
			errs[i] = fmt.Errorf("%w: notice %s: body is %d bytes, at most %d (serve --max-body)", notifier.ErrInvalidNotice, n.ID, len(n.Body), maxBody)
			continue
		}
		if policy != nil {
			if err := policy.Check(n.URL); err != nil {
				errs[i] = fmt.Errorf("%w: notice %s: url %s: %w", notifier.ErrInvalidNotice, n.ID, notifier.RedactURL(n.URL), err)
				continue
			}
		}
		p, err := encodePayload(n)
		if err != nil {
			errs[i] = err
			continue
		}
		t := notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 1}
		due, _ := n.Schedule.Due(n.Stamp, 1)
		calls = append(calls, scriptCall{enqueueScript,
			[]string{r.keys.Payload(n.ID), r.keys.DueOf(n.ID), r.keys.Trigger(t), r.keys.WakeFlagOf(n.ID)},
			[]any{p, r.keys.Member(t), due.UnixMilli(), forced, r.keys.Wake(), "0"}})
		idx = append(idx, i)
	}
	return errs, r.storeNotices(ctx, calls, idx, notices, errs)
}

// Claim implements notifier.Queue.
func (r *Redis) Claim(ctx context.Context, ts []notifier.Trigger, lease time.Duration) ([]notifier.ClaimResult, []notifier.Job, error) {
	end := r.Now().Add(lease).UnixMilli()
	calls := make([]scriptCall, len(ts))
	tokens := make([]string, len(ts))
	for i, t := range ts {
		tokens[i] = r.instance + ":" + strconv.FormatUint(r.claims.Add(1), 36)
		calls[i] = scriptCall{claimScript,
			[]string{r.keys.DueOf(t.ID), r.keys.Payload(t.ID), r.keys.Lease(t.ID), r.keys.Trigger(t)},
			[]any{r.keys.Member(t), lease.Milliseconds(), tokens[i], end}}
	}
	cmds, err := r.evalPipelined(ctx, calls)
	if err != nil {
		return nil, nil, fmt.Errorf("claim %d attempts: %w", len(ts), err)
	}
	results := make([]notifier.ClaimResult, len(ts))
	var jobs []notifier.Job
	for i, cmd := range cmds {
		v, err := cmd.Slice()
		if err != nil && !isReplyError(err) {
			// Its node is unreachable (a cluster master failing over):
			// not claimed; the sweep brings it back.
			results[i] = notifier.Stale
			r.log.Warn("claim failed; the sweep will retry it", "key", r.keys.Trigger(ts[i]), "err", err)
			continue
		}
		if err != nil || len(v) == 0 {
			return nil, nil, fmt.Errorf("claim %s: %w", r.keys.Trigger(ts[i]), errors.Join(err, errors.New("empty reply")))
		}
		code, _ := v[0].(int64)
		switch code {
		case 0:
			results[i] = notifier.Stale
		case 1:
			results[i] = notifier.Busy
		case 2:
			results[i] = notifier.Orphan
		case 3:
			p, _ := v[1].(string)
			n, err := decodePayload(ts[i].ID, []byte(p))
			if err == nil && !n.Stamp.Equal(ts[i].Stamp) {
				// An index entry of an earlier notice with this id: drop
				// the entry, never the current notice's payload (its
				// claim is blocked until this lease runs out).
				r.rdb.ZRem(ctx, r.keys.DueOf(ts[i].ID), r.keys.Member(ts[i]))
				results[i] = notifier.Stale
				continue
			}
			if err != nil || ts[i].N > len(n.Schedule) {
				// Nothing can be sent; finishing drops the notice so it
				// is not claimed again after every lease.
				results[i] = notifier.Corrupt
				job := notifier.Job{Notice: notifier.Notice{ID: ts[i].ID, Stamp: ts[i].Stamp}, N: ts[i].N, Token: tokens[i]}
				if _, ferr := r.Finish(ctx, job); ferr != nil {
					return nil, nil, ferr
				}
				r.log.Error("dropped a notice whose payload does not decode", "id", ts[i].ID, "err", err)
				continue
			}
			results[i] = notifier.Claimed
			job := notifier.Job{Notice: n, N: ts[i].N, Token: tokens[i]}
			if len(v) > 2 {
				if s, ok := v[2].(string); ok {
					if ms, err := strconv.ParseFloat(s, 64); err == nil {
						job.Due = time.UnixMilli(int64(ms))
					}
				}
			}
			jobs = append(jobs, job)
		default:
			return nil, nil, fmt.Errorf("claim %s: unexpected reply %v", r.keys.Trigger(ts[i]), v)
		}
	}
	return results, jobs, nil
}

func (r *Redis) trigger(job notifier.Job) notifier.Trigger {
	return notifier.Trigger{ID: job.Notice.ID, Stamp: job.Notice.Stamp, N: job.N}
}

// Complete implements notifier.Queue, pipelined.
func (r *Redis) Complete(ctx context.Context, cs []notifier.Completion) ([]bool, error) {
	calls := make([]scriptCall, len(cs))
	for i, c := range cs {
		t := r.trigger(c.Job)
		nextMember, nextKey := "", r.keys.Trigger(t)
		if c.Next > 0 {
			nt := notifier.Trigger{ID: t.ID, Stamp: t.Stamp, N: c.Next}
			nextMember, nextKey = r.keys.Member(nt), r.keys.Trigger(nt)
		}
		// Only a delivery is remembered: it is what enqueue must refuse to
		// repeat, and failures are rarer but would cost the same memory
		// for nothing (status reads them from the archive).
		tomb := ""
		if c.Next == 0 && c.Ended == notifier.Delivered {
			tomb = tombDelivered
		}
		calls[i] = scriptCall{completeScript,
			[]string{r.keys.DueOf(t.ID), r.keys.Payload(t.ID), r.keys.Lease(t.ID), nextKey, r.keys.WakeFlagOf(t.ID)},
			[]any{r.keys.Member(t), c.Job.Token, nextMember, c.Due.UnixMilli(), tomb, r.dedupWindow().Milliseconds(), r.keys.Wake()}}
	}
	cmds, err := r.evalPipelined(ctx, calls)
	if err != nil {
		return nil, fmt.Errorf("complete %d attempts: %w", len(cs), err)
	}
	kept := make([]bool, len(cs))
	var errs []error
	for i, cmd := range cmds {
		v, err := cmd.Int()
		if err != nil {
			if errs == nil {
				errs = make([]error, len(cs))
			}
			errs[i] = fmt.Errorf("complete %s: %w", r.keys.Trigger(r.trigger(cs[i].Job)), err)
			continue
		}
		kept[i] = v == 1
	}
	if errs != nil {
		return kept, &notifier.BatchErrors{Errs: errs}
	}
	return kept, nil
}

// Reschedule ends job's attempt and arms attempt next, due at due; false
// if the claim was lost.
func (r *Redis) Reschedule(ctx context.Context, job notifier.Job, next int, due time.Time) (bool, error) {
	kept, err := r.Complete(ctx, []notifier.Completion{{Job: job, Next: next, Due: due}})
	if err != nil {
		return false, err
	}
	return kept[0], nil
}

// Finish ends job's attempt and removes the notice; false if the claim was
// lost.
func (r *Redis) Finish(ctx context.Context, job notifier.Job) (bool, error) {
	return r.Reschedule(ctx, job, 0, time.Time{})
}

// Release implements notifier.Queue.
func (r *Redis) Release(ctx context.Context, job notifier.Job) error {
	t := r.trigger(job)
	cmds, err := r.evalPipelined(ctx, []scriptCall{{releaseScript,
		[]string{r.keys.DueOf(t.ID), r.keys.Lease(t.ID), r.keys.Trigger(t)},
		[]any{r.keys.Member(t), job.Token, r.Now().UnixMilli()}}})
	if err == nil {
		err = cmds[0].Err()
	}
	if err != nil {
		return fmt.Errorf("release %s: %w", r.keys.Trigger(t), err)
	}
	return nil
}

// Extend implements notifier.Queue.
func (r *Redis) Extend(ctx context.Context, job notifier.Job, lease time.Duration) (bool, error) {
	t := r.trigger(job)
	cmds, err := r.evalPipelined(ctx, []scriptCall{{extendScript,
		[]string{r.keys.DueOf(t.ID), r.keys.Lease(t.ID)},
		[]any{r.keys.Member(t), job.Token, lease.Milliseconds(), r.Now().Add(lease).UnixMilli()}}})
	if err != nil {
		return false, fmt.Errorf("extend lease of %s: %w", r.keys.Trigger(t), err)
	}
	v, err := cmds[0].Int()
	if err != nil {
		return false, fmt.Errorf("extend lease of %s: %w", r.keys.Trigger(t), err)
	}
	return v == 1, nil
}

// Overdue implements notifier.Queue. On a cluster each shard gives up to
// limit, and the oldest limit of all are returned.
func (r *Redis) Overdue(ctx context.Context, t time.Time, limit int) ([]notifier.Trigger, error) {
	n := r.keys.ShardCount()
	res, err := r.shardRanges(ctx, func(s int) redis.ZRangeArgs {
		return redis.ZRangeArgs{Key: r.keys.DueShard(s), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(t.UnixMilli(), 10), Count: int64(limit)}
	})
	if err != nil {
		return nil, fmt.Errorf("overdue: %w", err)
	}
	var ts []notifier.Trigger
	for s, zs := range res {
		for _, z := range zs {
			m, _ := z.Member.(string)
			tr, err := r.keys.ParseMember(m)
			if err != nil {
				// Only notifier writes this index; a bad member is
				// removed so it is not listed for ever.
				r.log.Error("dropping malformed due-index member", "member", m, "err", err)
				r.rdb.ZRem(ctx, r.keys.DueShard(s), m)
				continue
			}
			tr.Due = time.UnixMilli(int64(z.Score))
			ts = append(ts, tr)
		}
	}
	if n > 1 {
		slices.SortStableFunc(ts, func(a, b notifier.Trigger) int { return a.Due.Compare(b.Due) })
		ts = ts[:min(len(ts), limit)]
	}
	return ts, nil
}

// shardRanges runs one ZRANGE per due-index shard, pipelined. On a
// cluster with a master down, the shards of the masters that answer are
// returned (nil for the others); the error is set only if none answered.
func (r *Redis) shardRanges(ctx context.Context, arg func(s int) redis.ZRangeArgs) ([][]redis.Z, error) {
	n := r.keys.ShardCount()
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.ZSliceCmd, n)
	for s := range n {
		cmds[s] = pipe.ZRangeArgsWithScores(ctx, arg(s))
	}
	_, err := pipe.Exec(ctx)
	out := make([][]redis.Z, n)
	if err == nil || errors.Is(err, redis.Nil) {
		for s, c := range cmds {
			out[s] = c.Val()
		}
		return out, nil
	}
	// Some node failed. A cluster pipeline may then fail every command,
	// so ask each shard on its own and keep what answers.
	answered := 0
	for s := range n {
		zs, err := r.rdb.ZRangeArgsWithScores(ctx, arg(s)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			continue
		}
		out[s] = zs
		answered++
	}
	if answered == 0 {
		return nil, err
	}
	return out, nil
}

// NextDue implements notifier.Queue.
func (r *Redis) NextDue(ctx context.Context, t time.Time) (time.Time, bool, error) {
	res, err := r.shardRanges(ctx, func(s int) redis.ZRangeArgs {
		return redis.ZRangeArgs{Key: r.keys.DueShard(s), ByScore: true, Start: "(" + strconv.FormatInt(t.UnixMilli(), 10), Stop: "+inf", Count: 1}
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", err)
	}
	var next time.Time
	for _, zs := range res {
		if len(zs) > 0 {
			if d := time.UnixMilli(int64(zs[0].Score)); next.IsZero() || d.Before(next) {
				next = d
			}
		}
	}
	return next, !next.IsZero(), nil
}

// Nudge implements notifier.Queue: EXISTS on a key past its expiry makes
// Redis expire it, and publish the expired event, at once.
func (r *Redis) Nudge(ctx context.Context, ts []notifier.Trigger) ([]bool, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(ts))
	for i, t := range ts {
		cmds[i] = pipe.Exists(ctx, r.keys.Trigger(t))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("nudge %d triggers: %w", len(ts), err)
	}
	alive := make([]bool, len(ts))
	for i, c := range cmds {
		alive[i] = c.Val() == 1
	}
	return alive, nil
}

// Listen implements notifier.Events with a PSUBSCRIBE to the expired
// keyevent channel of the client's db, and a SUBSCRIBE to the wake channel.
// go-redis reconnects and resubscribes by itself; each resubscription calls
// h.Ready so the caller sweeps for events lost meanwhile.
func (r *Redis) Listen(ctx context.Context, h notifier.Handlers) error {
	if cc, ok := r.rdb.(*redis.ClusterClient); ok {
		return r.listenCluster(ctx, cc, h)
	}
	return r.listenNode(ctx, r.rdb, r.keys.Canary(r.instance), h)
}

// subscriber is what listenNode needs of a client: a node's own client on
// a cluster, the store's client otherwise.
type subscriber interface {
	PSubscribe(ctx context.Context, channels ...string) *redis.PubSub
}

// listenNode listens to one server's expired events, with a canary key
// that lives on that server.
func (r *Redis) listenNode(ctx context.Context, node subscriber, canaryKey string, h notifier.Handlers) error {
	expired := fmt.Sprintf("__keyevent@%d__:expired", r.db)
	ps := node.PSubscribe(ctx, expired)
	defer ps.Close()
	// The confirmations are awaited with a deadline: a connection that
	// goes silent now would otherwise hang here, before the canary runs.
	confirm := max(2*r.CanaryDeadline, time.Second)
	if _, err := ps.ReceiveTimeout(ctx, confirm); err != nil {
		return fmt.Errorf("psubscribe %s: %w", expired, err)
	}
	if err := ps.Subscribe(ctx, r.keys.Wake()); err != nil {
		return fmt.Errorf("subscribe %s: %w", r.keys.Wake(), err)
	}
	if _, err := ps.ReceiveTimeout(ctx, confirm); err != nil {
		return fmt.Errorf("subscribe %s: %w", r.keys.Wake(), err)
	}
	h.Ready()
	r.heardAt.Store(time.Now().UnixNano())
	// A large buffer keeps Redis from cutting us off (it drops pubsub
	// clients 32 MB behind) while workers are saturated.
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(1 << 16))
	c := canary{key: canaryKey, next: time.Now()}
	tick := time.NewTicker(min(r.CanaryInterval, r.CanaryDeadline) / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := r.checkCanary(ctx, &c); err != nil {
				return err
			}
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "psubscribe" {
					r.log.Info("resubscribed to expired events", "channel", expired)
					h.Ready()
				}
			case *redis.Message:
				if m.Channel == r.keys.Wake() {
					if m.Payload == wakePartners {
						if h.Partners != nil {
							h.Partners()
						}
					} else {
						h.Wake()
					}
					continue
				}
				switch t, err := r.keys.ParseTrigger(m.Payload); {
				case m.Payload == c.key:
					c.sent, c.next = time.Time{}, time.Now().Add(r.CanaryInterval)
					r.heardAt.Store(time.Now().UnixNano())
				case strings.HasPrefix(m.Payload, r.keys.prefix()+":"):
					// Our own bookkeeping (wake flags, other serves' canaries).
				case err != nil:
					r.foreign.Add(1)
					r.logged.Do(func() {
						r.log.Debug("ignoring expired keys that are not notifier triggers (logged once)", "key", m.Payload)
					})
				default:
					h.Fire(t)
				}
				// Any expired event proves the subscription alive. Taken
				// after Fire: while it blocked (workers busy) the loop
				// could not read, which says nothing about the connection.
				c.heard = time.Now()
				r.heardAt.Store(c.heard.UnixNano())
			}
		}
	}
}

// canary tracks the liveness probe of one subscription.
type canary struct {
	key  string
	sent time.Time // zero while no probe is out
	next time.Time
	// heard is when the last expired event of any key arrived: under a
	// backlog the probe waits its turn behind other events, which prove
	// the subscription alive just as well.
	heard time.Time
}

// checkCanary sends a probe when one is due, touches it so Redis expires it
// at once (without waiting for the expiry cycle), and declares the
// subscription dead when the probe's event is overdue. A dead subscription
// may mean keyspace events were switched off: they are switched back on if
// Redis allows it, and the outage is logged loudly either way.
func (r *Redis) checkCanary(ctx context.Context, c *canary) error {
	now := time.Now()
	switch {
	case c.sent.IsZero() && !now.Before(c.next):
		if err := r.rdb.Set(ctx, c.key, "", time.Millisecond).Err(); err == nil {
			c.sent = now
		}
	case c.sent.IsZero():
	case now.Sub(c.sent) > r.CanaryDeadline && now.Sub(c.heard) > r.CanaryDeadline:
		err := fmt.Errorf("%w: canary %s did not come back within %s", ErrSubscriptionDead, c.key, r.CanaryDeadline)
		if cerr := r.CheckEvents(ctx, false); errors.Is(cerr, ErrEventsOff) {
			r.log.Error("expired keyspace events are OFF: retries are only delivered by the sweep (about 2s late)", "err", cerr)
			if serr := r.CheckEvents(ctx, true); serr == nil {
				r.log.Error("switched expired keyspace events back on")
			}
		}
		return err
	default:
		_ = r.rdb.Exists(ctx, c.key).Err()
	}
	return nil
}
