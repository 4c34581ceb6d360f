package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// State is where a notice stands: what `notifier status`, `list`, the API
// and the console print, and what the store reports of a notice it knows.
type State string

// The states of a notice. The strings are a contract: they are printed,
// returned in JSON and stored in the tombstones of cancelled notices.
const (
	// StatePending: an attempt is armed (or in flight).
	StatePending State = "pending"
	// StateParked: pending, but set aside while its partner is paused.
	StateParked State = "parked"
	// StateDelivered and StateGaveUp mirror the final outcomes.
	StateDelivered State = "delivered"
	StateGaveUp    State = "gave-up"
	// StateCancelled: ended by `notifier cancel`.
	StateCancelled State = "cancelled"
	// StateDropped: the notice could not be attempted (its stored form was
	// unreadable) and was removed.
	StateDropped State = "dropped"
)

// WithStoreState corrects s (and ok, whether anything knows the notice)
// with what Redis knows that the attempt log does not, or not yet: a notice
// parked or cancelled, or one delivered whose last attempt is still on its
// way to the log (a delivered id is remembered for the dedup window).
func (s Status) WithStoreState(state State, ok bool) (Status, bool) {
	switch state {
	case StateParked, StateCancelled:
		s.State, ok = state, true
	case StateDelivered:
		s.State, ok = StateDelivered, true
	}
	return s, ok
}

// Status is what `notifier status` reports about one notice.
type Status struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// Attempts is how many attempts the log holds for the notice.
	Attempts int `json:"attempts"`
	// MaxAttempts is the schedule's length, when known (pending notices).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// NextAttempt and NextDue describe the pending attempt.
	NextAttempt int        `json:"next_attempt,omitempty"`
	NextDue     *time.Time `json:"next_due,omitempty"`
	InFlight    bool       `json:"in_flight,omitempty"`
	Stamp       *time.Time `json:"stamp,omitempty"`
	// Parked says why a parked notice waits (its partner is paused); its
	// NextAttempt then waits for a resume, with no due time.
	Parked *Parked `json:"parked,omitempty"`
	// Last is the most recent attempt, if any.
	Last *AttemptJSON `json:"last,omitempty"`
}

// StatusOf combines the pending attempt (n = 0 if none) and the logged
// attempts of a notice into its Status. ok is false when neither knows it.
func StatusOf(id string, pending *Notice, n int, inFlight bool, attempts []Attempt) (s Status, ok bool) {
	s = Status{ID: id, Attempts: len(attempts)}
	if len(attempts) > 0 {
		last := attempts[len(attempts)-1]
		raw, _ := MarshalAttempt(last)
		var j AttemptJSON
		_ = json.Unmarshal(raw, &j)
		s.Last = &j
	}
	switch {
	case pending != nil:
		s.State, s.MaxAttempts, s.NextAttempt, s.InFlight = StatePending, len(pending.Schedule), n, inFlight
		st := pending.Stamp.UTC()
		s.Stamp = &st
		if due, ok := pending.Schedule.Due(pending.Stamp, n); ok {
			due = due.UTC()
			s.NextDue = &due
		}
	case len(attempts) == 0:
		return s, false
	default:
		switch attempts[len(attempts)-1].Outcome {
		case Delivered:
			s.State = StateDelivered
		case GaveUp, Blocked:
			s.State = StateGaveUp
		default:
			s.State = StateDropped
		}
		st := attempts[len(attempts)-1].Stamp.UTC()
		s.Stamp = &st
	}
	return s, true
}

// NoticeStatus assembles what `notifier status` and the API report of
// notice id: the pending attempt from q, the logged attempts of its current
// send from log (nil: no log on this host), and what q knows that the log
// does not, or not yet (parked, cancelled, delivered a moment ago). It
// returns the attempts of the current send with the status. The error wraps
// ErrNotFound when neither knows the notice; any other is a store failure.
func NoticeStatus(ctx context.Context, q Notices, log History, id string) (Status, []Attempt, error) {
	var pending *Notice
	p, err := q.PendingHeader(ctx, id)
	switch {
	case err == nil:
		pending = &p.Notice
	case !errors.Is(err, ErrNotFound):
		return Status{}, nil, err
	}
	storeState, err := q.State(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Status{}, nil, err
	}
	var attempts []Attempt
	if log != nil {
		if attempts, err = log.NoticeAttempts(ctx, id); err != nil {
			return Status{}, nil, err
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
	st, ok := StatusOf(id, pending, p.N, p.InFlight, attempts)
	st, ok = st.WithStoreState(storeState, ok)
	if !ok {
		return st, nil, fmt.Errorf("notice %s: %w", id, ErrNotFound)
	}
	switch {
	case p.Parked != nil:
		// Nothing is armed until its partner resumes: no due time, and
		// not overdue however long the pause lasts.
		why := *p.Parked
		st.State, st.Parked, st.NextDue, st.InFlight = StateParked, &why, nil, false
	case pending != nil:
		due := p.Due.UTC() // the index's time: later than the slot after Retry-After or catch-up
		st.NextDue = &due
	}
	return st, attempts, nil
}
