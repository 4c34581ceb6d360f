package notifier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/notifier/notifier/backoff"
)

// ErrPublished is wrapped by the errors of ParseSummaries, ApplyPartner and
// Intake when what the running serve published for enqueuers does not
// parse: a partner's summary or its schedule. The notice is not at fault,
// and sending it again does not help until a serve publishes again.
var ErrPublished = errors.New("published partner config does not parse")

// publishedError marks err as ErrPublished without changing its text.
type publishedError struct{ err error }

func (e publishedError) Error() string        { return e.err.Error() }
func (e publishedError) Unwrap() error        { return e.err }
func (e publishedError) Is(target error) bool { return target == ErrPublished }

// Published is what the running serve published for those who enqueue:
// its default schedule and its partners. store.Redis implements it.
type Published interface {
	// DefaultSchedule returns the schedule serve published, or
	// backoff.Default if none was. The error is a store failure or a
	// published schedule that does not parse.
	DefaultSchedule(ctx context.Context) (backoff.Schedule, error)
	// PublishedPartners returns the partner summaries serve published,
	// name -> JSON (see ParseSummaries); empty if it published none. The
	// error is a store failure.
	PublishedPartners(ctx context.Context) (map[string]string, error)
}

// Submitter stores notices with their first attempt armed: new ones, and
// ended ones sent again. store.Redis implements it.
type Submitter interface {
	Enqueuer
	// Resend is Enqueue for an operator's explicit re-send of ended
	// notices: it also replaces what the store remembers of a notice
	// delivered within its dedup window. A pending notice is still refused
	// with an error wrapping ErrDuplicate. Its results are Enqueue's.
	Resend(ctx context.Context, ns []Notice) ([]error, error)
}

// Intake is the one way notices enter the queue, whoever sends them:
// `notifier enqueue`, the API, the console and package client. Enqueue
// resolves each notice as `notifier enqueue` does: its partner from the
// partners the running serve published (the one it names, else the one
// whose URL prefix matches longest), its schedule its own, else its
// partner's, else the published default, and its stamp the time it is
// stored, in whole milliseconds. Resend sends ended notices again with a
// fresh stamp. An Intake holds no state of its own; copies share its
// stores.
type Intake struct {
	// Queue stores the notices.
	Queue Submitter
	// Published gives the default schedule and the partners. Only Enqueue
	// and Resolve read it.
	Published Published
	// Now stamps the notices; nil: time.Now.
	Now func() time.Time
}

var _ Enqueuer = Intake{}

func (in Intake) now() time.Time {
	if in.Now == nil {
		return time.Now().Truncate(time.Millisecond)
	}
	return in.Now().Truncate(time.Millisecond)
}

// Resolve completes ns in place for storing, as Enqueue does, and stores
// nothing: it sets each notice's Stamp, Partner and, unless the notice
// keeps its own, Schedule. A notice whose Schedule is nil gets its
// partner's, else the published default; one whose Schedule Line.Notice
// defaulted may get its partner's instead; any other keeps its own.
//
// The first result holds one error per notice, nil if it was resolved:
// it wraps ErrUnknownPartner for a partner serve did not publish,
// ErrInvalidNotice for a URL outside the named partner's prefixes, and
// ErrPublished for a partner whose published schedule does not parse. The
// second is an error reading what serve published (the first result is
// then nil): a store failure, a default schedule that does not parse, or
// partners that do not parse (it then wraps ErrPublished).
func (in Intake) Resolve(ctx context.Context, ns []Notice) ([]error, error) {
	var def backoff.Schedule
	for i := range ns {
		if ns[i].Schedule == nil {
			var err error
			if def, err = in.Published.DefaultSchedule(ctx); err != nil {
				return nil, err
			}
			break
		}
	}
	raw, err := in.Published.PublishedPartners(ctx)
	if err != nil {
		return nil, err
	}
	published, err := ParseSummaries(raw)
	if err != nil {
		return nil, err
	}
	prefixes := publishedPrefixes(published)
	// The stamp is when the notices are stored, not when they were read.
	stamp := in.now()
	errs := make([]error, len(ns))
	for i := range ns {
		n := &ns[i]
		n.Stamp = stamp
		if err := applyPartner(n, published, prefixes, n.Schedule != nil && !n.scheduleDefaulted); err != nil {
			errs[i] = err
			continue
		}
		if n.Schedule == nil {
			n.Schedule = def
		}
	}
	return errs, nil
}

// Enqueue resolves ns in place (see Resolve) and stores the notices it
// could resolve with Queue.Enqueue, their first attempts armed. It
// implements Enqueuer: the first result holds one error per notice, nil
// if it was stored, else Resolve's reason or Queue's (ErrDuplicate,
// ErrInvalidNotice, ErrNotStored, ErrUnconfirmed); the second is Resolve's
// error (the first is then nil) or a store failure after which the
// per-notice results say which notices are stored.
func (in Intake) Enqueue(ctx context.Context, ns []Notice) ([]error, error) {
	errs, err := in.Resolve(ctx, ns)
	if err != nil {
		return nil, err
	}
	keep := make([]Notice, 0, len(ns))
	idx := make([]int, 0, len(ns))
	for i := range ns {
		if errs[i] == nil {
			keep, idx = append(keep, ns[i]), append(idx, i)
		}
	}
	if len(keep) == 0 {
		return errs, nil
	}
	end := traceEnqueue(ctx, SpanEnqueue, keep)
	kerrs, err := in.Queue.Enqueue(ctx, keep)
	end(kerrs, err)
	for j, i := range idx {
		switch {
		case kerrs != nil:
			errs[i] = kerrs[j]
		case err != nil: // the store failed before sending any
			errs[i] = fmt.Errorf("notice %s: %w: %v", ns[i].ID, ErrNotStored, err)
		}
	}
	return errs, err
}

// Resend sends ended notices again as `notifier retry` and `replay` do: as
// they were archived (URL, body, partner, schedule, secrets), with a fresh
// stamp, so their schedule starts now. It stamps ns in place and returns
// Queue.Resend's results: a notice that is pending again is refused with an
// error wrapping ErrDuplicate.
func (in Intake) Resend(ctx context.Context, ns []Notice) ([]error, error) {
	stamp := in.now()
	for i := range ns {
		ns[i].Stamp = stamp
	}
	end := traceEnqueue(ctx, SpanResend, ns)
	errs, err := in.Queue.Resend(ctx, ns)
	end(errs, err)
	return errs, err
}
