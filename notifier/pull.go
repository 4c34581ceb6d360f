package notifier

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The reconciliation pull (GET /v1/partner/notices) walks a partner's
// notices in a stable order and hands back a cursor to resume from:
//
//   - Ended notices (delivered, gave-up) are walked in the order the
//     attempt log committed the attempts that ended them (its Seq). The log
//     assigns Seq at commit, so a notice that ends is never committed
//     behind a cursor already handed out, which an order by end time could
//     not promise (attempts end on several workers and are committed in
//     batches). Seq lives in the SQLite file, so the cursor survives
//     restarts. A notice re-sent and ended again is listed again, at its
//     new end.
//   - Pending notices are walked by (stamp, id), read from Redis: a
//     snapshot of what still waits. A notice enqueued after the walk
//     started has a later stamp, so a walk that reached the end and resumes
//     sees it.
//
// Cursors are opaque to clients: base64url of "a<seq>" (both ended
// states; "d" or "g" for one) or "p<stamp ms>.<id>" (pending). A cursor is
// good for the state it was handed out for only.

// ErrBadCursor is wrapped by Pull's error for a cursor it did not hand out,
// or one of another state.
var ErrBadCursor = errors.New("invalid cursor")

// Page sizes of Pull: DefaultPullLimit without a limit, at most
// MaxPullLimit. PullScanLimit bounds the attempts one page of ended
// notices reads (most of them retries); a page that stops there has More
// set and a cursor past them.
const (
	DefaultPullLimit = 100
	MaxPullLimit     = 1000
	PullScanLimit    = 20000
)

// PullQuery is one page request.
type PullQuery struct {
	// State is StateDelivered, StateGaveUp, StatePending, or "" for both
	// ended states.
	State State
	// Since is the cursor of the previous page; "" starts at the
	// beginning.
	Since string
	// Limit bounds the notices returned; 0: DefaultPullLimit.
	Limit int
}

// PulledNotice is one notice of a page, without its body (GET
// /v1/partner/notices/{id} has it).
type PulledNotice struct {
	ID    string    `json:"id"`
	State State     `json:"state"`
	Stamp time.Time `json:"stamp"`
	// URL has no query string.
	URL string `json:"url"`
	// Attempts is how many attempts were made (ended notices) or the
	// number of the attempt that waits (pending ones).
	Attempts int `json:"attempts"`
	// Ended and Status describe the attempt that ended it.
	Ended  *time.Time `json:"ended,omitempty"`
	Status int        `json:"status,omitempty"`
	// NextDue is when the waiting attempt is due.
	NextDue *time.Time `json:"next_due,omitempty"`
}

// PullPage is one page of a pull.
type PullPage struct {
	Notices []PulledNotice `json:"notices"`
	// Next resumes after this page; it equals the request's cursor when
	// nothing new was found.
	Next string `json:"next"`
	// More is set when more notices may follow at once: ask again with
	// Next rather than waiting.
	More bool `json:"more"`
}

// ParsePullState reads the state parameter of a pull.
func ParsePullState(s string) (State, error) {
	switch st := State(s); st {
	case "", StateDelivered, StateGaveUp, StatePending:
		return st, nil
	}
	return "", fmt.Errorf("%w: state %q: want delivered, gave-up or pending", ErrInvalidNotice, s)
}

// ErrBusy is wrapped by Pull's error for a page of pending notices asked
// for while other pulls of pending notices have kept the portal's one slot
// for PendingPullWait: each reads every pending notice from Redis, so
// they take turns rather than all run at once.
var ErrBusy = errors.New("busy: other pulls of pending notices are running")

// PendingPullWait is how long a pull of pending notices waits for its
// turn.
const PendingPullWait = 5 * time.Second

// errPageFull stops a scan once a page is complete.
var errPageFull = errors.New("page full")

// Pull returns a page of c's notices after q.Since.
func (p *Portal) Pull(ctx context.Context, c Caller, q PullQuery) (PullPage, error) {
	switch {
	case q.Limit == 0:
		q.Limit = DefaultPullLimit
	case q.Limit < 0 || q.Limit > MaxPullLimit:
		return PullPage{}, fmt.Errorf("%w: limit %d: want 1 to %d", ErrInvalidNotice, q.Limit, MaxPullLimit)
	}
	if q.State == StatePending {
		wait := time.NewTimer(PendingPullWait)
		defer wait.Stop()
		select {
		case p.pendingSlot <- struct{}{}:
			defer func() { <-p.pendingSlot }()
		case <-wait.C:
			return PullPage{}, ErrBusy
		case <-ctx.Done():
			return PullPage{}, ctx.Err()
		}
		return p.pullPending(ctx, c, q)
	}
	return p.pullEnded(ctx, c, q)
}

// endedCursorKind is the first letter of the cursors of a walk of ended
// notices in state st: a walk of one state skips the others' notices, so
// its cursor is no good for another walk.
func endedCursorKind(st State) string {
	switch st {
	case StateDelivered:
		return "d"
	case StateGaveUp:
		return "g"
	}
	return "a"
}

func (p *Portal) pullEnded(ctx context.Context, c Caller, q PullQuery) (PullPage, error) {
	kind := endedCursorKind(q.State)
	var after int64
	if q.Since != "" {
		raw, ok := decodeCursor(q.Since)
		var err error
		if ok && strings.HasPrefix(raw, kind) {
			after, err = strconv.ParseInt(raw[1:], 10, 64)
		}
		if !ok || !strings.HasPrefix(raw, kind) || err != nil || after < 0 {
			return PullPage{}, fmt.Errorf("%w: not a cursor of this state's notices", ErrBadCursor)
		}
	}
	page := PullPage{Notices: []PulledNotice{}, Next: encodeCursor(kind + strconv.FormatInt(after, 10))}
	scanned := 0
	err := p.c.Log.Each(ctx, AttemptFilter{Partner: c.Partner, AfterSeq: after}, func(a Attempt) error {
		if len(page.Notices) == q.Limit || scanned == PullScanLimit {
			page.More = true
			return errPageFull
		}
		scanned++
		page.Next = encodeCursor(kind + strconv.FormatInt(a.Seq, 10))
		st := endedState(a.Outcome)
		if st == "" || q.State != "" && st != q.State {
			return nil
		}
		end := a.Start.Add(a.Duration).UTC()
		page.Notices = append(page.Notices, PulledNotice{ID: a.NoticeID, State: st, Stamp: a.Stamp.UTC(),
			URL: RedactURL(a.URL), Attempts: a.N, Ended: &end, Status: a.Status})
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return PullPage{}, err
	}
	return page, nil
}

// endedState is the state an attempt of outcome o ended its notice in; ""
// if it did not end it (or dropped it).
func endedState(o Outcome) State {
	switch o {
	case Delivered:
		return StateDelivered
	case GaveUp, Blocked:
		return StateGaveUp
	}
	return ""
}

// pendingKey orders pending notices.
type pendingKey struct {
	stamp int64
	id    string
}

func (k pendingKey) compare(o pendingKey) int {
	if k.stamp != o.stamp {
		return cmpInt(k.stamp, o.stamp)
	}
	return strings.Compare(k.id, o.id)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// pullPending reads every pending notice (Redis lists them in no order),
// keeps c's after the cursor, and returns the first q.Limit by (stamp,
// id). Memory stays bounded by the page; the time grows with what waits.
func (p *Portal) pullPending(ctx context.Context, c Caller, q PullQuery) (PullPage, error) {
	after := pendingKey{stamp: -1 << 62}
	if q.Since != "" {
		raw, ok := decodeCursor(q.Since)
		ms, id, found := strings.Cut(strings.TrimPrefix(raw, "p"), ".")
		stamp, err := strconv.ParseInt(ms, 10, 64)
		if !ok || !strings.HasPrefix(raw, "p") || !found || err != nil {
			return PullPage{}, fmt.Errorf("%w: not a cursor of pending notices", ErrBadCursor)
		}
		after = pendingKey{stamp: stamp, id: id}
	}
	var kept []PendingNotice
	more := false
	err := p.c.Queue.EachPending(ctx, func(pn PendingNotice) error {
		if pn.Notice.Partner != c.Partner {
			return nil
		}
		k := pendingKey{pn.Notice.Stamp.UnixMilli(), pn.Notice.ID}
		if k.compare(after) <= 0 {
			return nil
		}
		i, _ := slices.BinarySearchFunc(kept, k, func(e PendingNotice, k pendingKey) int {
			return pendingKey{e.Notice.Stamp.UnixMilli(), e.Notice.ID}.compare(k)
		})
		if i == q.Limit {
			more = true
			return nil
		}
		kept = slices.Insert(kept, i, pn)
		if len(kept) > q.Limit {
			kept, more = kept[:q.Limit], true
		}
		return nil
	})
	if err != nil {
		return PullPage{}, err
	}
	page := PullPage{Notices: make([]PulledNotice, 0, len(kept)), Next: q.Since, More: more}
	for _, pn := range kept {
		st := StatePending
		if pn.Parked {
			st = StateParked
		}
		due := pn.Due.UTC()
		page.Notices = append(page.Notices, PulledNotice{ID: pn.Notice.ID, State: st, Stamp: pn.Notice.Stamp.UTC(),
			URL: RedactURL(pn.Notice.URL), Attempts: pn.N, NextDue: &due})
	}
	if n := len(kept); n > 0 {
		last := kept[n-1].Notice
		page.Next = encodeCursor("p" + strconv.FormatInt(last.Stamp.UnixMilli(), 10) + "." + last.ID)
	} else if page.Next == "" {
		page.Next = encodeCursor("p" + strconv.FormatInt(after.stamp, 10) + ".")
	}
	return page, nil
}

func encodeCursor(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }

func decodeCursor(c string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}
