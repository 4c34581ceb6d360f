package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// Claim implements notifier.Queue.
func (r *Redis) Claim(ctx context.Context, ts []notifier.Trigger, lease time.Duration) ([]notifier.ClaimResult, []notifier.Job, error) {
	end := r.Now().Add(lease).UnixMilli()
	tokens := make([]string, len(ts))
	var sb shardBatches
	for i, t := range ts {
		tokens[i] = r.instance + ":" + strconv.FormatUint(r.claims.Add(1), 36)
		b := sb.batchFor(r.keys.ShardOf(t.ID), atBatchMax, func() *scriptBatch {
			return &scriptBatch{call: scriptCall{claimScript,
				[]string{r.keys.DueOf(t.ID), r.keys.Records(t.ID)},
				[]any{lease.Milliseconds(), end}}}
		})
		b.call.keys = append(b.call.keys, r.keys.Payload(t.ID), r.keys.Lease(t.ID), r.keys.Trigger(t))
		b.call.args = append(b.call.args, r.keys.Member(t), tokens[i], t.ID, recordHash(t.ID))
		b.idx = append(b.idx, i)
	}
	batches := sb.all
	cmds, err := r.evalPipelined(ctx, sb.calls())
	if err != nil {
		return nil, nil, fmt.Errorf("claim %d attempts: %w", len(ts), err)
	}
	replies := make([][]any, len(ts)) // nil: not claimed, for the sweep to retry
	for j, cmd := range cmds {
		b := batches[j]
		vs, stopped, err := batchReply(cmd, len(b.idx))
		if err != nil && !isReplyError(err) && !errors.Is(err, errBatchReply) {
			// Its node is unreachable (a cluster master failing over):
			// not claimed; the sweep brings them back.
			r.log.Warn("claim failed; the sweep will retry it", "attempts", len(b.idx), "key", r.keys.Trigger(ts[b.idx[0]]), "err", err)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("claim %s: %w", r.keys.Trigger(ts[b.idx[0]]), err)
		}
		if stopped != nil {
			r.log.Error("claim script failed part-way; the sweep will retry what it did not claim", "key", r.keys.Trigger(ts[b.idx[0]]), "err", stopped)
		}
		for k, i := range b.idx {
			if code, ok := vs[k].(int64); ok && (code == batchFailed || code == batchNotRun) {
				continue
			}
			v, _ := vs[k].([]any)
			if len(v) == 0 {
				return nil, nil, fmt.Errorf("claim %s: unexpected reply %v", r.keys.Trigger(ts[i]), vs[k])
			}
			replies[i] = v
		}
	}
	results := make([]notifier.ClaimResult, len(ts))
	var jobs []notifier.Job
	for i, v := range replies {
		if v == nil {
			results[i] = notifier.Stale
			continue
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
			if len(v) < 2 {
				return nil, nil, fmt.Errorf("claim %s: unexpected reply %v", r.keys.Trigger(ts[i]), v)
			}
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
	w := r.dedupWindow()
	gen := dedupGeneration(w)
	var sb shardBatches
	for i, c := range cs {
		t := r.trigger(c.Job)
		b := sb.batchFor(r.keys.ShardOf(t.ID), atBatchMax, func() *scriptBatch {
			return &scriptBatch{call: scriptCall{completeScript,
				[]string{r.keys.DueOf(t.ID), r.keys.WakeFlagOf(t.ID), r.keys.DedupDir(t.ID), r.keys.Records(t.ID)},
				[]any{w.Milliseconds(), r.keys.Wake(), r.keys.DedupNodes(t.ID), gen.Milliseconds(), r.farHorizon().Milliseconds()}}}
		})
		nextMember, nextKey := "", r.keys.Trigger(t)
		if c.Next > 0 {
			nt := notifier.Trigger{ID: t.ID, Stamp: t.Stamp, N: c.Next}
			nextMember, nextKey = r.keys.Member(nt), r.keys.Trigger(nt)
		}
		// Only a delivery is remembered: it is what enqueue must refuse to
		// repeat, and failures are rarer but would cost the same memory
		// for nothing (status reads them from the archive).
		remember := "0"
		if c.Next == 0 && c.Ended == notifier.Delivered {
			remember = "1"
		}
		route, member := dedupDigest(t.ID)
		b.call.keys = append(b.call.keys, r.keys.Payload(t.ID), r.keys.Lease(t.ID), nextKey)
		b.call.args = append(b.call.args, r.keys.Member(t), c.Job.Token, nextMember, c.Due.UnixMilli(), remember, route, member, t.ID, c.Next,
			recordHash(t.ID))
		b.idx = append(b.idx, i)
	}
	batches := sb.all
	cmds, err := r.evalPipelined(ctx, sb.calls())
	if err != nil {
		return nil, fmt.Errorf("complete %d attempts: %w", len(cs), err)
	}
	kept := make([]bool, len(cs))
	var errs []error
	for j, cmd := range cmds {
		vs, stopped, err := batchReply(cmd, len(batches[j].idx))
		if stopped == nil {
			stopped = errBatchReply // a failure code with no error's text
		}
		for k, i := range batches[j].idx {
			var code int64
			if err == nil {
				code, _ = vs[k].(int64)
			}
			var ierr error
			switch {
			case err != nil:
				ierr = err
			case code == batchFailed:
				ierr = fmt.Errorf("the complete script failed on it: %w", stopped)
			case code == batchNotRun:
				ierr = fmt.Errorf("the complete script stopped before it: %w", stopped)
			default:
				kept[i] = code == 1
				continue
			}
			if errs == nil {
				errs = make([]error, len(cs))
			}
			errs[i] = fmt.Errorf("complete %s: %w", r.keys.Trigger(r.trigger(cs[i].Job)), ierr)
		}
	}
	if errs != nil {
		return kept, &notifier.BatchErrors{Errs: errs}
	}
	return kept, nil
}

// scriptBatchMax is the most attempts one claim or complete script
// handles: enough to share its reads and writes, few enough to keep Redis
// from its other clients for well under a millisecond.
const scriptBatchMax = 64

// scriptBatch is one script call for several items, and the items' places
// in the caller's slice, in the order the script answers for them.
type scriptBatch struct {
	call  scriptCall
	idx   []int
	bytes int // the payload bytes it carries, where that matters
}

// shardBatches sorts items into script calls of one shard each (a
// script's keys must share a hash slot), in the order the items come.
type shardBatches struct {
	all     []*scriptBatch
	filling map[int]*scriptBatch // per shard, the call being filled
}

// batchFor returns the call shard s's next item goes in: the one being
// filled, or one start makes when there is none or full says it is full.
func (sb *shardBatches) batchFor(s int, full func(*scriptBatch) bool, start func() *scriptBatch) *scriptBatch {
	b := sb.filling[s]
	if b == nil || full(b) {
		if sb.filling == nil {
			sb.filling = make(map[int]*scriptBatch)
		}
		b = start()
		sb.filling[s] = b
		sb.all = append(sb.all, b)
	}
	return b
}

// calls returns the script calls, in the order they were started.
func (sb *shardBatches) calls() []scriptCall {
	calls := make([]scriptCall, len(sb.all))
	for j, b := range sb.all {
		calls[j] = b.call
	}
	return calls
}

// atBatchMax says a claim or complete call holds scriptBatchMax items.
func atBatchMax(b *scriptBatch) bool { return len(b.idx) == scriptBatchMax }

// errBatchReply marks a batch script's reply that does not have the shape
// its script promises.
var errBatchReply = errors.New("malformed reply")

// batchCodes is the code a batch script (see batchLua) gives an item it
// failed on, and one it did not reach.
const (
	batchFailed = -1
	batchNotRun = -2
)

// batchReply returns the per-item answers of a batch script's reply for
// items items, and the error that stopped the script part-way, if any
// (see batchLua). A reply of the wrong shape is an error wrapping
// errBatchReply; one Redis refused is returned as cmd.Slice returns it.
func batchReply(cmd *redis.Cmd, items int) ([]any, error, error) {
	vs, err := cmd.Slice()
	if err != nil {
		return nil, nil, err
	}
	var stopped error
	if len(vs) == items+1 {
		if msg, ok := vs[items].(string); ok {
			stopped, vs = errors.New(msg), vs[:items]
		}
	}
	if len(vs) != items {
		return nil, nil, fmt.Errorf("%w: %d answers for %d items", errBatchReply, len(vs), items)
	}
	return vs, stopped, nil
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
func (r *Redis) Overdue(ctx context.Context, from, to time.Time, limit int) ([]notifier.Trigger, error) {
	r.promote(ctx)
	n := r.keys.ShardCount()
	start := "-inf"
	if !from.IsZero() {
		start = strconv.FormatInt(from.UnixMilli(), 10)
	}
	res, err := r.shardRanges(ctx, func(s int) redis.ZRangeArgs {
		return redis.ZRangeArgs{Key: r.keys.DueShard(s), ByScore: true, Start: start, Stop: strconv.FormatInt(to.UnixMilli(), 10), Count: int64(limit)}
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
