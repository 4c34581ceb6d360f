package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/notifier/notifier/notifier"
)

// enqueuePipelineBytes bounds the payload bytes of one enqueue pipeline. A
// pipeline of many large bodies (600 of 1 MiB) takes Redis longer than a
// read timeout to take in: it fails half-way, with part of it stored.
// Pipelines of a few MiB keep every round trip well inside the timeouts
// while still carrying thousands of small notices each.
const enqueuePipelineBytes = 4 << 20

// enqueueResends is how often a pipeline of enqueue scripts whose
// connection failed is sent again. The script recognises a payload it
// stored already (reply 3), so sending it again is safe and tells which
// notices are stored.
var enqueueResends = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second}

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
				args[len(args)-1] = "1"
				batch[k].args = args
			}
		}
		cmds, err := r.evalPipelined(ctx, batch)
		var left []int
		for k, j := range todo {
			i := idx[j]
			if err != nil {
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
