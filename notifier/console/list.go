package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/notifier/notifier/notifier"
)

const (
	// listLimit bounds each part of the notices list (waiting, ended).
	listLimit = 100
	// pendingScanCap bounds the pending notices one list reads from Redis
	// (each read fetches the notice's header, not its body). Unfiltered
	// counts stay exact beyond it; filtered ones are shown as "N+".
	pendingScanCap = 5000
)

var errEnough = errors.New("enough")

// states are the notice states the list filters by, in display order.
var states = []notifier.State{notifier.StatePending, notifier.StateParked, notifier.StateDelivered, notifier.StateGaveUp}

// listRow is one notice in the list.
type listRow struct {
	ID          string
	State       notifier.State
	Partner     string
	URL         string
	Stamp       time.Time
	Attempt, Of int
	// When is the next due time (waiting) or the end (ended).
	When time.Time
}

type stateCount struct {
	State notifier.State
	Count int
	// More is set when the count stopped at pendingScanCap.
	More bool
}

type listData struct {
	State, Partner, Since, Until string
	Partners                     []string
	States                       []notifier.State
	Counts                       []stateCount
	Waiting, Ended               []listRow
	Capped                       bool
	Limit                        int
}

// notices lists notices: waiting ones (pending, parked) from Redis, soonest
// due first, and ended ones (delivered, gave-up) from the archive, latest
// end first, with counts per state. Since/until bound the stamp of waiting
// notices and the end of ended ones.
func (h *handler) notices(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	q := r.URL.Query()
	d := listData{State: q.Get("state"), Partner: q.Get("partner"), Since: q.Get("since"), Until: q.Get("until"),
		States: states, Limit: listLimit}
	if d.State != "" && !slices.Contains(states, notifier.State(d.State)) {
		h.message(w, r, s, http.StatusBadRequest, "Unknown state: want pending, parked, delivered or gave-up.")
		return
	}
	now := h.o.Now()
	var f notifier.NoticeFilter
	var err error
	if f.Since, err = notifier.ParseWhen(d.Since, now); err == nil {
		f.Until, err = notifier.ParseWhen(d.Until, now)
	}
	if err != nil {
		h.message(w, r, s, http.StatusBadRequest,
			"Since and until take RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23) or a duration ago (2h).")
		return
	}
	f.Partner = d.Partner
	if d.Partners, err = h.partnerNames(ctx); err != nil {
		h.fail(w, r, s, err)
		return
	}

	counts := map[notifier.State]int{}
	scanned := 0
	err = h.o.Queue.EachPending(ctx, func(p notifier.PendingNotice) error {
		if scanned++; scanned > pendingScanCap {
			d.Capped = true
			return errEnough
		}
		n := p.Notice
		if f.Partner != "" && n.Partner != f.Partner || !f.Since.IsZero() && n.Stamp.Before(f.Since) ||
			!f.Until.IsZero() && !n.Stamp.Before(f.Until) {
			return nil
		}
		st := notifier.StatePending
		if p.Parked {
			st = notifier.StateParked
		}
		counts[st]++
		if d.State == "" || notifier.State(d.State) == st {
			d.Waiting = append(d.Waiting, listRow{ID: n.ID, State: st, Partner: n.Partner, URL: notifier.RedactURL(n.URL),
				Stamp: n.Stamp, Attempt: p.N, Of: len(n.Schedule), When: p.Due})
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		h.fail(w, r, s, err)
		return
	}
	slices.SortFunc(d.Waiting, func(a, b listRow) int { return a.When.Compare(b.When) })
	d.Waiting = d.Waiting[:min(len(d.Waiting), listLimit)]
	exact := !d.Capped
	if d.Capped && f == (notifier.NoticeFilter{}) {
		// Counting without filters needs no scan.
		if counts, err = h.waitingCounts(ctx, d.Partners); err != nil {
			h.fail(w, r, s, err)
			return
		}
		exact = true
	}
	for _, o := range []notifier.Outcome{notifier.Delivered, notifier.GaveUp} {
		g := f
		g.Outcome = o
		if counts[notifier.State(o)], err = h.o.Log.CountEnded(ctx, g); err != nil {
			h.fail(w, r, s, err)
			return
		}
	}
	for _, st := range states {
		d.Counts = append(d.Counts, stateCount{State: st, Count: counts[st],
			More: !exact && (st == notifier.StatePending || st == notifier.StateParked)})
	}
	if st := notifier.State(d.State); st == "" || st == notifier.StateDelivered || st == notifier.StateGaveUp {
		f.Outcome = notifier.Outcome(d.State)
		ended, err := h.recentEnded(ctx, f, listLimit)
		if err != nil {
			h.fail(w, r, s, err)
			return
		}
		for _, e := range ended {
			d.Ended = append(d.Ended, listRow{ID: e.Notice.ID, State: notifier.State(e.Outcome), Partner: e.Partner,
				URL: notifier.RedactURL(e.Notice.URL), Stamp: e.Notice.Stamp, Attempt: e.Attempts,
				Of: len(e.Notice.Schedule), When: e.Ended})
		}
	}
	h.render(w, r, s, http.StatusOK, "notices", "Notices", d)
}

// waitingCounts counts pending and parked notices without reading them.
func (h *handler) waitingCounts(ctx context.Context, partners []string) (map[notifier.State]int, error) {
	due, err := h.o.Queue.PendingCount(ctx, nil)
	if err != nil {
		return nil, err
	}
	ps, err := h.o.Queue.PartnerStates(ctx, partners)
	if err != nil {
		return nil, err
	}
	counts := map[notifier.State]int{notifier.StatePending: int(due)}
	for _, p := range ps {
		counts[notifier.StateParked] += int(p.Parked)
	}
	return counts, nil
}

// recentWindows are the spans recentEnded tries, newest first.
var recentWindows = []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 30 * 24 * time.Hour}

// recentEnded returns the last n archived notices matching f, latest end
// first. The archive is read oldest first, so it reads the shortest recent
// window that holds n notices (counting one is an index count), which keeps
// the payloads it decodes near n however large the archive is.
func (h *handler) recentEnded(ctx context.Context, f notifier.NoticeFilter, n int) ([]notifier.EndedNotice, error) {
	end := f.Until
	if end.IsZero() {
		end = h.o.Now()
	}
	g := f
	for _, span := range recentWindows {
		from := end.Add(-span)
		if !f.Since.IsZero() && !from.After(f.Since) {
			break
		}
		w := f
		w.Since = from
		c, err := h.o.Log.CountEnded(ctx, w)
		if err != nil {
			return nil, err
		}
		if c >= n {
			g = w
			break
		}
	}
	ring := make([]notifier.EndedNotice, 0, n)
	next := 0
	err := h.o.Log.EachEnded(ctx, g, func(e notifier.EndedNotice) error {
		e.Notice.Body, e.Notice.Header, e.Notice.Secrets = nil, nil, nil // never shown
		if len(ring) < n {
			ring = append(ring, e)
		} else {
			ring[next] = e
		}
		next = (next + 1) % n
		return nil
	})
	if err != nil && !errors.Is(err, notifier.ErrCorruptArchive) {
		return nil, err
	}
	if len(ring) == n {
		ring = append(ring[next:], ring[:next]...)
	}
	slices.Reverse(ring)
	return ring, nil
}
