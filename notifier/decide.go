package notifier

import (
	"errors"
	"fmt"
	"time"

	"github.com/notifier/notifier/backoff"
)

// Action is what the store must do with a claimed attempt once it is made.
type Action int

// The store actions of a Decision.
const (
	// Arm ends the attempt and arms attempt Decision.Next at Decision.Due.
	Arm Action = iota
	// End ends the attempt and removes the notice (Decision.Outcome says
	// how it ended).
	End
	// Park moves the attempt aside until its partner is resumed.
	Park
	// Release hands the attempt back, unmade, due now.
	Release
)

// Verdict is what Decide is told of one attempt: the notice and attempt
// number, what the POST gave, and the rules that judge it.
type Verdict struct {
	Notice *Notice
	N      int
	Result Result
	// Rule judges the reply: the notice's rule, else its partner's (zero:
	// any 2xx).
	Rule SuccessRule
	// Partner is the notice's partner, nil if none.
	Partner *Partner
	// CanPause says whether partners can be paused (a Pauser is set).
	CanPause bool
	// Aborted says the attempt was cancelled by shutdown.
	Aborted bool
	// Rand is a random number in [0, 1) for the partner's jitter.
	Rand float64
}

// Decision is what to do after an attempt: its outcome and error text for
// the log, and the one store action that applies it.
type Decision struct {
	Outcome Outcome
	Error   string
	Action  Action
	// Next and Due are the attempt to arm and when (Arm).
	Next int
	Due  time.Time
	// Succeeded says the reply met the success rule (it counts for the
	// partner's failures in a row).
	Succeeded bool
	// PauseReason, when set, pauses the partner now (it answered 410 and
	// pauses on gone); the attempt is parked.
	PauseReason string
}

// Decide judges one attempt and says what follows it. It is pure: the
// dispatcher applies the decision to the store, the log and the partner's
// pause state.
//
//   - cancelled by shutdown before any reply: Release, outcome error;
//   - a reply that meets the rule: End, delivered;
//   - an address the guard blocks: End, blocked (it stays blocked);
//   - 410 from a partner that pauses on gone: Park, and pause the partner;
//   - 410 otherwise, or no attempt left: End, gave up;
//   - else Arm the next attempt (Schedule.Next from this attempt's start),
//     plus the partner's jitter, and no earlier than a Retry-After asked.
func Decide(v Verdict) Decision {
	res := v.Result
	var d Decision
	if res.Err != nil {
		d.Error = res.Err.Error()
	}
	if res.Err == nil && res.Status != 0 {
		var why string
		if d.Succeeded, why = v.Rule.Check(res.Status, res.Snippet); !d.Succeeded && Succeeded(res.Status) {
			d.Error = "reply does not meet the success rule: " + why
		}
	}
	n := v.Notice
	p := v.Partner
	switch {
	case v.Aborted && res.Status == 0:
		d.Outcome, d.Action, d.Error = Error, Release, "aborted by shutdown; attempt released for retry"
	case d.Succeeded:
		d.Outcome, d.Action = Delivered, End
	case errors.Is(res.Err, ErrBlocked):
		d.Outcome, d.Action = Blocked, End
		d.Error = "blocked by the address guard, not retried: " + d.Error
	case Permanent(res.Status) && p != nil && p.PauseOnGone && v.CanPause:
		// The partner says it is gone: pause it and park the notice, so
		// an operator can resume it rather than lose it.
		d.Outcome, d.Action = Retry, Park
		d.Error = fmt.Sprintf("partner answered %d: partner %s paused; notice parked until it resumes", res.Status, p.Name)
		d.PauseReason = fmt.Sprintf("answered %d Gone", res.Status)
	default:
		next, due, ok := n.Schedule.Next(n.Stamp, v.N, res.Start)
		if !ok || Permanent(res.Status) {
			d.Outcome, d.Action = GaveUp, End
			if d.Error == "" {
				d.Error = failure(res.Status)
			}
			return d
		}
		if p != nil && p.Jitter > 0 {
			due = due.Add(backoff.Jitter(n.Schedule, next, p.Jitter, v.Rand))
		}
		if res.RetryAfter > 0 {
			// The partner asked for a pause: the next attempt waits as a
			// scheduled trigger, never as a sleeping goroutine.
			if at := res.Start.Add(res.Duration).Add(res.RetryAfter); at.After(due) {
				due = at
			}
		}
		d.Outcome, d.Action, d.Next, d.Due = Retry, Arm, next, due
	}
	return d
}

func failure(status int) string {
	if Permanent(status) {
		return fmt.Sprintf("partner answered %d: permanent, not retried", status)
	}
	return ""
}
