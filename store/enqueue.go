package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/notifier/notifier/notifier"
)

// enqueuePipelineBytes bounds the payload bytes of one enqueue pipeline. A
// pipeline of many large bodies (600 of 1 MiB) takes Redis longer than a
// read timeout to take in: it fails half-way, with part of it stored.
// Pipelines of a few MiB keep every round trip well inside the timeouts
// while still carrying thousands of small notices each.
const enqueuePipelineBytes = 4 << 20

// receiptTTL is how long an enqueue's receipt lives: well past the last
// re-send of its call (the timeouts plus enqueueResends), short enough to
// cost little memory.
const receiptTTL = time.Minute

// receiptWindow is how long the enqueue calls that share receipt hashes
// take to start; a hash lives receiptTTL past its last call's.
const receiptWindow = time.Second

// enqueueResends is how often a pipeline of enqueue scripts whose
// connection failed is sent again. A call whose first send ran finds its
// receipt and answers as the lost reply did (3 for each notice it stored),
// writing nothing, so sending it again is safe and tells which notices are
// stored.
var enqueueResends = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second}

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
// `replay`): it also stores a notice delivered within the dedup window
// (whose id stays remembered as delivered). A pending notice is still
// refused.
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
	var sb shardBatches
	// Notices of one call mostly share a few URLs: each is checked once.
	var valid, allowed notifier.URLMemo
	if policy != nil {
		allowed.Func = policy.Check
	}
	for i := range notices {
		n := &notices[i]
		if err := n.ValidateMemo(&valid); err != nil {
			errs[i] = err
			continue
		}
		if maxBody > 0 && len(n.Body) > maxBody {
			errs[i] = fmt.Errorf("%w: notice %s: body is %d bytes, at most %d (serve --max-body)", notifier.ErrInvalidNotice, n.ID, len(n.Body), maxBody)
			continue
		}
		if policy != nil {
			if err := allowed.Check(n.URL); err != nil {
				errs[i] = fmt.Errorf("%w: notice %s: url %s: %w", notifier.ErrInvalidNotice, n.ID, notifier.RedactURL(n.URL), err)
				continue
			}
		}
		p, err := encodePayload(n)
		if err != nil {
			errs[i] = err
			continue
		}
		b := sb.batchFor(r.keys.ShardOf(n.ID), func(b *scriptBatch) bool {
			return len(b.idx) == enqueueBatchNotices || b.bytes+len(p) > enqueueBatchBytes
		}, func() *scriptBatch { return r.newEnqueueBatch(n.ID, forced) })
		r.addToBatch(b, n, p, i)
	}
	return errs, r.storeNotices(ctx, sb.all, notices, errs)
}

// An enqueue script stores at most enqueueBatchNotices notices of one shard,
// and past its first notice at most enqueueBatchBytes of payloads: what
// every notice of a batch needs once (the table's state, the clock, the
// dedup directory, the receipts hash, a ZADD to the due index) then costs
// Redis once per batch, while a batch still keeps Redis from its other
// clients for well under a millisecond.
const (
	enqueueBatchNotices = 64
	enqueueBatchBytes   = 64 << 10
)

// newEnqueueBatch starts a batch for the shard of notice id, with a token
// of its own. Its receipts go to the receipt hash of its first notice.
func (r *Redis) newEnqueueBatch(id string, forced string) *scriptBatch {
	window := r.Now().UnixMilli() / receiptWindow.Milliseconds()
	return &scriptBatch{call: scriptCall{enqueueScript,
		[]string{r.keys.DueOf(id), r.keys.WakeFlagOf(id), r.keys.Receipts(id, window), r.keys.DedupDir(id), r.keys.Records(id)},
		[]any{forced, r.keys.Wake(), "0", (receiptTTL + receiptWindow).Milliseconds(), r.keys.DedupNodes(id),
			r.farHorizon().Milliseconds(), 1, r.instance + ":e" + strconv.FormatUint(r.claims.Add(1), 36)}}}
}

// addToBatch adds notice n (at place i), whose payload is p, to b.
func (r *Redis) addToBatch(b *scriptBatch, n *notifier.Notice, p []byte, i int) {
	t := notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 1}
	due, _ := n.Schedule.Due(n.Stamp, 1)
	route, member := dedupDigest(n.ID)
	b.call.keys = append(b.call.keys, r.keys.Payload(n.ID), r.keys.Trigger(t))
	b.call.args = append(b.call.args, p, r.keys.Member(t), due.UnixMilli(), route, member, n.ID, recordHash(n.ID))
	b.idx = append(b.idx, i)
	b.bytes += len(p)
}

// storeNotices runs the enqueue batches in pipelines of at most
// enqueuePipelineBytes of payloads and sets errs for each notice not
// stored. After a failure that re-sending does not cure, the notices in
// doubt are marked notifier.ErrUnconfirmed, those not sent
// notifier.ErrNotStored, and the failure is returned.
func (r *Redis) storeNotices(ctx context.Context, batches []*scriptBatch, notices []notifier.Notice, errs []error) error {
	for start := 0; start < len(batches); {
		end, size := start, 0
		for end < len(batches) && (end == start || size+batches[end].bytes <= enqueuePipelineBytes) {
			size += batches[end].bytes
			end++
		}
		if err := r.storePipeline(ctx, batches[start:end], notices, errs); err != nil {
			for _, b := range batches[end:] {
				for _, i := range b.idx {
					errs[i] = fmt.Errorf("notice %s: %w: enqueue stopped after Redis failed", notices[i].ID, notifier.ErrNotStored)
				}
			}
			return fmt.Errorf("enqueue: %w", err)
		}
		start = end
	}
	return nil
}

// resentArg is the index in an enqueue call's args of ARGV[3], the flag
// of a call sent again.
const resentArg = 2

// storePipeline runs one pipeline of enqueue batches, sending again those
// whose reply was lost to a connection failure.
func (r *Redis) storePipeline(ctx context.Context, batches []*scriptBatch, notices []notifier.Notice, errs []error) error {
	todo := batches // still without a reply
	var lastErr error
	for try := 0; ; try++ {
		calls := make([]scriptCall, len(todo))
		for k, b := range todo {
			calls[k] = b.call
			if try > 0 {
				// Sent again: the script may find this call's
				// receipt, left by the send whose reply was lost.
				calls[k].args = slices.Clone(b.call.args)
				calls[k].args[resentArg] = "1"
			}
		}
		cmds, pipeErr := r.evalPipelined(ctx, calls)
		err := pipeErr
		var left []*scriptBatch
		for k, b := range todo {
			if pipeErr != nil {
				left = append(left, b)
				continue
			}
			codes, stopped, cerr := batchReply(cmds[k], len(b.idx))
			switch {
			case cerr != nil && !isReplyError(cerr) && !errors.Is(cerr, errBatchReply):
				left, err = append(left, b), cerr
			case cerr != nil:
				for _, i := range b.idx {
					errs[i] = fmt.Errorf("notice %s: %w: %w", notices[i].ID, notifier.ErrUnconfirmed, cerr)
				}
			default:
				enqueueResults(b, codes, stopped, notices, errs)
			}
		}
		if todo = left; len(todo) == 0 {
			return nil
		}
		lastErr = err
		if try == len(enqueueResends) || ctx.Err() != nil {
			break
		}
		r.log.Warn("enqueue pipeline failed; sending it again (a call that ran answers from its receipt)", "batches", len(left), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(enqueueResends[try]):
		}
	}
	for _, b := range todo {
		for _, i := range b.idx {
			errs[i] = fmt.Errorf("notice %s: %w: Redis failed before confirming it was stored: %v", notices[i].ID, notifier.ErrUnconfirmed, lastErr)
		}
	}
	return lastErr
}

// enqueueResults sets errs for the notices of b that its script's answers
// say were not stored (or, after a failure part-way, may not be).
func enqueueResults(b *scriptBatch, codes []any, stopped error, notices []notifier.Notice, errs []error) {
	if stopped == nil {
		stopped = errBatchReply // a failure code with no error's text
	}
	for k, i := range b.idx {
		code, _ := codes[k].(int64)
		switch code {
		case 1, 3:
		case 0:
			errs[i] = fmt.Errorf("notice %s: already pending: %w", notices[i].ID, notifier.ErrDuplicate)
		case 2:
			errs[i] = fmt.Errorf("notice %s: already delivered (within the dedup window; `notifier retry` sends it again): %w",
				notices[i].ID, notifier.ErrDuplicate)
		case batchNotRun:
			errs[i] = fmt.Errorf("notice %s: %w: the enqueue script failed before it: %w", notices[i].ID, notifier.ErrNotStored, stopped)
		default:
			errs[i] = fmt.Errorf("notice %s: %w: the enqueue script failed on it: %w", notices[i].ID, notifier.ErrUnconfirmed, stopped)
		}
	}
}
