package notifier

import (
	"context"
	"errors"
	"time"
)

// ErrCorruptArchive is wrapped by History's errors for an archived notice
// whose stored form does not decode.
var ErrCorruptArchive = errors.New("archived notice does not decode")

// AttemptFilter selects logged attempts. Zero values select everything.
type AttemptFilter struct {
	NoticeID string
	Outcome  Outcome
	Partner  string
	// AfterSeq selects attempts with Seq > AfterSeq; it is how a tail
	// resumes where it stopped.
	AfterSeq int64
}

// EndedNotice is an archived notice and how it ended.
type EndedNotice struct {
	// Notice is the notice as it was enqueued, with its full URL, headers
	// and body: what `notifier retry` sends again.
	Notice Notice
	// Outcome is the outcome of the attempt that ended the notice.
	Outcome Outcome
	// Ended is when that attempt finished (its start plus its duration),
	// with microsecond precision.
	Ended time.Time
	// Attempts is the slot N of that attempt.
	Attempts int
	// Partner names the partner the notice was sent under; empty if none.
	Partner string
}

// NoticeFilter selects archived notices; zero fields select everything.
// Since and Until bound the end time: Since is inclusive, Until exclusive.
type NoticeFilter struct {
	Since, Until time.Time
	Outcome      Outcome
	Partner      string
}

// History is the attempt log and its archive of ended notices, as status,
// retry, the API and the console read them; a read-only handle is enough.
// store.SQLite implements it.
type History interface {
	// NoticeAttempts returns every logged attempt of notice id (of all its
	// sends), oldest first. None is not an error: the notice may still be
	// waiting for its first attempt.
	NoticeAttempts(ctx context.Context, id string) ([]Attempt, error)
	// Last returns the last n attempts that match f (all of them if
	// n <= 0), oldest first.
	Last(ctx context.Context, f AttemptFilter, n int) ([]Attempt, error)
	// Follow calls fn for every attempt matching f, oldest first, then
	// polls every poll for new ones, until ctx ends (it then returns nil)
	// or fn returns an error (it returns that error).
	Follow(ctx context.Context, f AttemptFilter, poll time.Duration, fn func(Attempt) error) error
	// Ended returns the archived notice id as it was when it last ended.
	// The error wraps ErrNotFound if id never ended, and ErrCorruptArchive
	// if its stored form does not decode.
	Ended(ctx context.Context, id string) (EndedNotice, error)
	// EachEnded calls fn for every archived notice matching f, oldest end
	// first, and returns fn's first error. Notices that do not decode are
	// skipped; if any were, it returns, after visiting the others, an
	// error wrapping ErrCorruptArchive.
	EachEnded(ctx context.Context, f NoticeFilter, fn func(EndedNotice) error) error
	// CountEnded returns how many archived notices match f, counting
	// those that do not decode.
	CountEnded(ctx context.Context, f NoticeFilter) (int, error)
}
