package notifier

import (
	"context"
	"fmt"
	"time"
)

// Trigger names one pending attempt: attempt N of the notice ID stamped at
// Stamp. It is what a trigger key encodes.
type Trigger struct {
	ID    string
	Stamp time.Time
	N     int
	// Due is the attempt's due-index score when the trigger comes from
	// Queue.Overdue (when it was armed to run); zero from an event.
	Due time.Time
}

// Job is a claimed attempt: the notice to send and the lease token that proves
// the claim when the attempt is completed or released.
type Job struct {
	Notice Notice
	N      int
	// Token identifies this claim; a claim whose lease ran out is taken over
	// by whoever claims next, and completing with a stale token is a no-op.
	Token string
	// Due is when the attempt was armed to run: its slot, or later if the
	// partner asked for a delay (Retry-After) or the attempt was handed
	// back (shutdown, a crashed worker's lease). Zero if unknown.
	Due time.Time
}

// Completion ends one claimed attempt.
type Completion struct {
	Job Job
	// Next is the attempt to arm, due at Due; 0 removes the notice
	// (delivered or given up).
	Next int
	Due  time.Time
	// Ended says how the notice ended when Next is 0: Delivered, or
	// anything else for a notice given up. The store remembers it for its
	// dedup window.
	Ended Outcome
}

// ClaimResult says what happened to one trigger passed to Queue.Claim.
type ClaimResult int

// The results of a claim.
const (
	// Claimed: the caller owns the attempt until its lease runs out.
	Claimed ClaimResult = iota
	// Stale: the attempt is no longer pending (done by someone else,
	// cancelled, or a trigger for a notice that is gone).
	Stale
	// Busy: another worker holds a live lease on the notice.
	Busy
	// Orphan: the due index named the attempt but its payload is gone; the
	// entry was dropped.
	Orphan
	// Corrupt: the stored payload did not decode; it was dropped.
	Corrupt
)

// Queue is the store of pending attempts. Implementations make every method
// atomic per notice, so several dispatchers on one store make each attempt
// once (bar a lease that runs out mid-attempt).
type Queue interface {
	// Claim tries to take each trigger for lease. It returns one result per
	// trigger, and the Job for each Claimed one, in order. Claiming deletes a
	// trigger key that has not fired yet, so it cannot fire later.
	Claim(ctx context.Context, ts []Trigger, lease time.Duration) ([]ClaimResult, []Job, error)
	// Complete ends claimed attempts in one round trip. It reports for
	// each whether the claim was still held; a lost claim (its lease ran out
	// and another worker took the attempt over) changes nothing. When some
	// completions failed and others were saved, the error is a
	// *BatchErrors.
	Complete(ctx context.Context, cs []Completion) ([]bool, error)
	// Extend makes job's claim last lease from now, for an attempt that may
	// run longer than the lease it was claimed with; false if the claim was
	// lost.
	Extend(ctx context.Context, job Job, lease time.Duration) (bool, error)
	// Release hands job's attempt back unfinished, due now, for any worker.
	Release(ctx context.Context, job Job) error
	// Overdue lists up to limit pending triggers due from from through to
	// (both included; a zero from is no lower bound), oldest first.
	// Claimed attempts are not listed until their lease runs out.
	Overdue(ctx context.Context, from, to time.Time, limit int) ([]Trigger, error)
	// NextDue returns the earliest due time after t of a pending attempt,
	// and false if there is none.
	NextDue(ctx context.Context, t time.Time) (time.Time, bool, error)
	// Nudge touches the trigger keys of ts so the store fires their expiry
	// events now rather than whenever its expiry cycle finds them. It reports
	// for each whether the key was still there, unexpired.
	Nudge(ctx context.Context, ts []Trigger) ([]bool, error)
}

// Events is the stream of triggers whose time has come.
type Events interface {
	// Listen calls h's functions, from one goroutine, until ctx ends (it
	// then returns nil) or the subscription fails.
	Listen(ctx context.Context, h Handlers) error
}

// Handlers receive what Events.Listen hears.
type Handlers struct {
	// Ready is called each time the subscription is (re)established, so
	// the caller can sweep for triggers that fired while nobody listened.
	Ready func()
	// Fire is called for each trigger that fires.
	Fire func(Trigger)
	// Wake is called when an attempt was armed already due (a new notice,
	// or a retry whose slot has passed): the waker should look now rather
	// than at its next tick.
	Wake func()
	// Partners, if set, is called when a partner was paused or resumed.
	Partners func()
}

// AttemptLog records attempts. Record may batch: a recorded attempt becomes
// visible to readers shortly after, and all recorded attempts are written by
// the time the log's Run returns.
type AttemptLog interface {
	Record(ctx context.Context, a Attempt) error
}

// Pauser keeps partners' shared pause state. Optional: without one, no
// partner is ever paused.
type Pauser interface {
	// Paused reports, for each named partner, whether it is paused and
	// how many attempts are parked for it.
	Paused(ctx context.Context, names []string) (map[string]PauseState, error)
	// ParkedPartners names the partners with attempts parked that the
	// fleet's published config no longer names.
	ParkedPartners(ctx context.Context) ([]string, error)
	// Unpark re-arms the attempts parked for partner, due now.
	Unpark(ctx context.Context, partner string) (int, error)
	// Park moves job's attempt aside while its partner is paused; false if
	// the claim was lost.
	Park(ctx context.Context, job Job, partner string) (bool, error)
	// PartnerResult counts the partner's failed attempts in a row (ok
	// resets the count) and pauses it at threshold (0: never) or at once
	// when gone is a non-empty reason. It reports whether this call paused
	// the partner.
	PartnerResult(ctx context.Context, name string, ok bool, threshold int, gone string) (bool, error)
}

// PauseState is a partner's pause state as the dispatcher sees it.
type PauseState struct {
	Paused bool
	Parked int64
}

// BatchErrors is returned by a batch operation when some items failed and
// others succeeded: Errs[i] is nil for the ones that succeeded.
type BatchErrors struct{ Errs []error }

// Error says how many failed, and the first reason.
func (e *BatchErrors) Error() string {
	n, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	return fmt.Sprintf("%d of %d failed, first: %v", n, len(e.Errs), first)
}
