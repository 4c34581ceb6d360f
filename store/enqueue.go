package store

import (
	"context"
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
// connection failed is sent again. The script recognises a payload it
// stored already (reply 3), so sending it again is safe and tells which
// notices are stored.
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
	calls := make([]scriptCall, 0, len(notices))
	idx := make([]int, 0, len(notices))
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
		call, err := r.enqueueCall(n, forced)
		if err != nil {
			errs[i] = err
			continue
		}
		calls = append(calls, call)
		idx = append(idx, i)
	}
	return errs, r.storeNotices(ctx, calls, idx, notices, errs)
}

// enqueueCall is the script call that stores n, with a token of its own.
func (r *Redis) enqueueCall(n *notifier.Notice, forced string) (scriptCall, error) {
	p, err := encodePayload(n)
	if err != nil {
		return scriptCall{}, err
	}
	t := notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 1}
	due, _ := n.Schedule.Due(n.Stamp, 1)
	return scriptCall{enqueueScript,
		[]string{r.keys.Payload(n.ID), r.keys.DueOf(n.ID), r.keys.Trigger(t), r.keys.WakeFlagOf(n.ID), r.keys.Receipts(n.ID, r.Now().UnixMilli()/receiptWindow.Milliseconds()), r.keys.DedupDir(n.ID), r.keys.Records(n.ID)},
		append(append([]any{p, r.keys.Member(t), due.UnixMilli(), forced, r.keys.Wake(), "0",
			r.instance + ":e" + strconv.FormatUint(r.claims.Add(1), 36), (receiptTTL + receiptWindow).Milliseconds()},
			r.dedupRef(n.ID)...), n.ID, 1, r.farHorizon().Milliseconds())}, nil
}

// storeNotices runs the enqueue calls in pipelines of at most
// enqueuePipelineBytes and sets errs[idx[j]] for each call j that did not
// store a new notice. After a failure that re-sending does not cure, the
// calls in doubt are marked notifier.ErrUnconfirmed, those not sent
// notifier.ErrNotStored, and the failure is returned.
func (r *Redis) storeNotices(ctx context.Context, calls []scriptCall, idx []int, notices []notifier.Notice, errs []error) error {
	for start := 0; start < len(calls); {
		end, size := start, 0
		for end < len(calls) && (end == start || size+payloadLen(calls[end]) <= enqueuePipelineBytes) {
			size += payloadLen(calls[end])
			end++
		}
		if err := r.storeBatch(ctx, calls[start:end], idx[start:end], notices, errs); err != nil {
			for j := end; j < len(calls); j++ {
				errs[idx[j]] = fmt.Errorf("notice %s: %w: enqueue stopped after Redis failed", notices[idx[j]].ID, notifier.ErrNotStored)
			}
			return fmt.Errorf("enqueue: %w", err)
		}
		start = end
	}
	return nil
}

func payloadLen(c scriptCall) int {
	p, _ := c.args[0].([]byte)
	return len(p)
}

// resentArg is the index in an enqueue call's args of ARGV[6], the flag
// of a call sent again.
const resentArg = 5

// storeBatch runs one pipeline of enqueue calls, sending again those whose
// reply was lost to a connection failure.
func (r *Redis) storeBatch(ctx context.Context, calls []scriptCall, idx []int, notices []notifier.Notice, errs []error) error {
	todo := make([]int, len(calls)) // positions in calls still without a reply
	for j := range todo {
		todo[j] = j
	}
	var lastErr error
	for try := 0; ; try++ {
		batch := make([]scriptCall, len(todo))
		for k, j := range todo {
			batch[k] = calls[j]
			if try > 0 {
				// Sent again: the script may find this call's own
				// payload, stored by the send whose reply was lost.
				args := slices.Clone(calls[j].args)
				args[resentArg] = "1"
				batch[k].args = args
			}
		}
		cmds, pipeErr := r.evalPipelined(ctx, batch)
		err := pipeErr
		var left []int
		for k, j := range todo {
			i := idx[j]
			if pipeErr != nil {
				left = append(left, j)
				continue
			}
			v, cerr := cmds[k].Int()
			switch {
			case cerr != nil && !isReplyError(cerr):
				left, err = append(left, j), cerr
			case cerr != nil:
				errs[i] = fmt.Errorf("enqueue %s: %w", notices[i].ID, cerr)
			case v == 0:
				errs[i] = fmt.Errorf("notice %s: already pending: %w", notices[i].ID, notifier.ErrDuplicate)
			case v == 2:
				errs[i] = fmt.Errorf("notice %s: already delivered (within the dedup window; `notifier retry` sends it again): %w",
					notices[i].ID, notifier.ErrDuplicate)
			}
		}
		if todo = left; len(todo) == 0 {
			return nil
		}
		lastErr = err
		if try == len(enqueueResends) || ctx.Err() != nil {
			break
		}
		r.log.Warn("enqueue pipeline failed; sending it again (stored notices are recognised)", "notices", len(left), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(enqueueResends[try]):
		}
	}
	for _, j := range todo {
		errs[idx[j]] = fmt.Errorf("notice %s: %w: Redis failed before confirming it was stored: %v", notices[idx[j]].ID, notifier.ErrUnconfirmed, lastErr)
	}
	return lastErr
}
