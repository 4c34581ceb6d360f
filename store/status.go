package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/notifier/notifier/notifier"
)

// NoticeStatus assembles what `notifier status` and the API report of
// notice id: the pending attempt from Redis, the logged attempts of its
// current send from log (nil: no log on this host), and what Redis knows
// that the log does not, or not yet (parked, cancelled, delivered a moment
// ago). It wraps notifier.ErrNotFound when neither knows the notice.
func NoticeStatus(ctx context.Context, q *Redis, log *SQLite, id string) (notifier.Status, []notifier.Attempt, error) {
	var pending *notifier.Notice
	p, err := q.PendingHeader(ctx, id)
	switch {
	case err == nil:
		pending = &p.Notice
	case !errors.Is(err, notifier.ErrNotFound):
		return notifier.Status{}, nil, err
	}
	redisState, err := q.State(ctx, id)
	if err != nil && !errors.Is(err, notifier.ErrNotFound) {
		return notifier.Status{}, nil, err
	}
	var attempts []notifier.Attempt
	if log != nil {
		if attempts, err = log.NoticeAttempts(ctx, id); err != nil {
			return notifier.Status{}, nil, err
		}
	}
	if pending != nil {
		// Attempts of an earlier notice with the same id are not this one's.
		kept := attempts[:0]
		for _, a := range attempts {
			if a.Stamp.Equal(pending.Stamp) {
				kept = append(kept, a)
			}
		}
		attempts = kept
	}
	st, ok := notifier.StatusOf(id, pending, p.N, p.InFlight, attempts)
	st, ok = st.WithStoreState(redisState, ok)
	if !ok {
		return st, nil, fmt.Errorf("notice %s: %w", id, notifier.ErrNotFound)
	}
	if pending != nil {
		due := p.Due.UTC() // the index's time: later than the slot after Retry-After or catch-up
		st.NextDue = &due
	}
	return st, attempts, nil
}
