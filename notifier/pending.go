package notifier

import (
	"context"
	"errors"
	"time"
)

// ErrEnded is wrapped by Notices.Cancel for a notice that already ended.
var ErrEnded = errors.New("notice already ended")

// Pending describes a notice that has an attempt pending.
type Pending struct {
	Notice Notice
	// N is the pending attempt.
	N int
	// Due is when attempt N is due.
	Due time.Time
	// InFlight is true while a worker holds a claim on the attempt.
	InFlight bool
	// Parked, when set, says attempt N is set aside while its partner is
	// paused: Due is then its slot, and nothing is armed until a resume.
	Parked *Parked
}

// Parked says why a pending notice waits: the partner it is parked for,
// and when and why that partner was paused (from its shared state).
type Parked struct {
	Partner string    `json:"partner"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// PendingNotice is one notice listed by Notices.EachPending.
type PendingNotice struct {
	// Notice is the notice without its body.
	Notice Notice
	// N is the pending attempt and Due when it is armed to run (for a
	// parked notice: its slot).
	N   int
	Due time.Time
	// Parked is true while its partner is paused.
	Parked bool
}

// Notices reads and ends the notices the store holds until they end: what
// status, list, cancel, the API and the console ask of it. store.Redis
// implements it.
type Notices interface {
	// State says what the store knows of notice id: StatePending (or
	// StateParked) while it waits, then StateDelivered or StateCancelled
	// for the dedup window after it ended. It wraps ErrNotFound when the
	// store knows nothing of id.
	State(ctx context.Context, id string) (State, error)
	// PendingHeader returns notice id's pending attempt, the notice
	// without its body; for a parked notice, the attempt parked, with
	// Parked saying why. It wraps ErrNotFound if nothing is pending for id.
	PendingHeader(ctx context.Context, id string) (Pending, error)
	// EachPending calls fn for every pending notice (parked ones
	// included), without bodies, in no particular order, until fn returns
	// an error, which it returns.
	EachPending(ctx context.Context, fn func(PendingNotice) error) error
	// PendingCount counts pending notices: those due or in flight, and
	// those parked for the named partners.
	PendingCount(ctx context.Context, partners []string) (int64, error)
	// Cancel ends pending notice id: no further attempt is made. It wraps
	// ErrNotFound if the store knows no such notice and ErrEnded if it
	// already ended.
	Cancel(ctx context.Context, id string) error
}

// PartnerState is a partner's shared state: whether it is paused, and what
// waits for it.
type PartnerState struct {
	Paused bool
	Reason string
	// Since is when it was last paused or resumed.
	Since time.Time
	// Fails counts its failed attempts in a row.
	Fails int
	// Parked counts the attempts waiting for it to resume.
	Parked int64
}

// PartnerAdmin reads and changes partners' shared pause state, as
// `notifier partner` and the console's partners page do. store.Redis
// implements it.
type PartnerAdmin interface {
	// PartnerStates reads the state of each named partner; a partner
	// never paused has the zero state. Only a store failure is an error.
	PartnerStates(ctx context.Context, names []string) (map[string]PartnerState, error)
	// Pause marks partner name paused for reason: serves park its
	// attempts instead of sending them until Resume.
	Pause(ctx context.Context, name, reason string) error
	// Resume un-pauses partner name and re-arms, due now, every attempt
	// parked meanwhile. It returns how many it re-armed, also with the
	// error of a store that failed part-way.
	Resume(ctx context.Context, name string) (int, error)
}
