package console

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/notifier/notifier/notifier"
)

// portalList is the portal's notices page.
type portalList struct {
	State          string
	States         []notifier.State
	Counts         []stateCount
	Waiting, Ended []listRow
	Capped         bool
	Limit          int
	Prefixes       []string
	Flash          string
}

// portalFlashes are the messages a redirect after a portal button may ask
// for, by name, so nothing from the request is echoed.
var portalFlashes = map[string]string{
	"retried": "Sent again with a fresh stamp: its schedule starts now.",
	"tested":  "Test notice sent: one attempt, no retries. It is listed below as it goes.",
}

// notices lists the partner's notices: waiting ones from Redis, soonest
// due first, and ended ones from the archive, latest end first, with
// counts per state. The store lists every partner's; only the session's
// partner's are kept.
//
// Lists take turns as the console's do (see limited): one that waits
// ListWait is answered 503 with Retry-After.
func (p *portal) notices(w http.ResponseWriter, r *http.Request, s partnerSession) {
	wait := time.NewTimer(p.o.ListWait)
	defer wait.Stop()
	select {
	case p.core.lists <- struct{}{}:
		defer func() { <-p.core.lists }()
		p.noticesNow(w, r, s)
	case <-wait.C:
		w.Header().Set("Retry-After", strconv.Itoa(int(listRetryAfter/time.Second)))
		p.message(w, r, s, http.StatusServiceUnavailable, "Busy: other notice lists are being read. Try again in a moment.")
	case <-r.Context().Done():
	}
}

func (p *portal) noticesNow(w http.ResponseWriter, r *http.Request, s partnerSession) {
	ctx := r.Context()
	me := s.caller.Partner
	d := portalList{State: r.URL.Query().Get("state"), States: states, Limit: listLimit,
		Prefixes: p.o.Portal.Prefixes(me), Flash: portalFlashes[r.URL.Query().Get("done")]}
	if d.State != "" && !slices.Contains(states, notifier.State(d.State)) {
		p.message(w, r, s, http.StatusBadRequest, "Unknown state: want pending, parked, delivered or gave-up.")
		return
	}
	counts := map[notifier.State]int{}
	scanned := 0
	err := p.o.Queue.EachPending(ctx, func(pn notifier.PendingNotice) error {
		if scanned++; scanned > pendingScanCap {
			d.Capped = true
			return errEnough
		}
		n := pn.Notice
		if n.Partner != me {
			return nil
		}
		st := notifier.StatePending
		if pn.Parked {
			st = notifier.StateParked
		}
		counts[st]++
		if d.State == "" || notifier.State(d.State) == st {
			d.Waiting = append(d.Waiting, listRow{ID: n.ID, State: st, Partner: n.Partner, URL: notifier.RedactURL(n.URL),
				Stamp: n.Stamp, Attempt: pn.N, Of: len(n.Schedule), When: pn.Due})
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		p.fail(w, r, s, err)
		return
	}
	slices.SortFunc(d.Waiting, func(a, b listRow) int { return a.When.Compare(b.When) })
	d.Waiting = d.Waiting[:min(len(d.Waiting), listLimit)]
	f := notifier.NoticeFilter{Partner: me}
	for _, o := range []notifier.Outcome{notifier.Delivered, notifier.GaveUp} {
		g := f
		g.Outcome = o
		if counts[notifier.State(o)], err = p.o.Log.CountEnded(ctx, g); err != nil {
			p.fail(w, r, s, err)
			return
		}
	}
	for _, st := range states {
		d.Counts = append(d.Counts, stateCount{State: st, Count: counts[st],
			More: d.Capped && (st == notifier.StatePending || st == notifier.StateParked)})
	}
	if st := notifier.State(d.State); st == "" || st == notifier.StateDelivered || st == notifier.StateGaveUp {
		f.Outcome = notifier.Outcome(d.State)
		ended, err := p.core.recentEnded(ctx, f, listLimit)
		if err != nil {
			p.fail(w, r, s, err)
			return
		}
		for _, e := range ended {
			d.Ended = append(d.Ended, listRow{ID: e.Notice.ID, State: notifier.State(e.Outcome), Partner: e.Partner,
				URL: notifier.RedactURL(e.Notice.URL), Stamp: e.Notice.Stamp, Attempt: e.Attempts,
				Of: len(e.Notice.Schedule), When: e.Ended})
		}
	}
	p.render(w, r, s, http.StatusOK, "notices", "Your notices", d)
}

// notice shows one of the partner's notices as the console does: its
// timeline of slots and attempts, each attempt's status, lateness and
// reply, and a button to have an ended one sent again.
func (p *portal) notice(w http.ResponseWriter, r *http.Request, s partnerSession) {
	id := r.PathValue("id")
	pn, err := p.o.Portal.Notice(r.Context(), s.caller, id)
	switch {
	case errors.Is(err, notifier.ErrNotFound):
		p.message(w, r, s, http.StatusNotFound, "No such notice.")
		return
	case err != nil:
		p.fail(w, r, s, err)
		return
	}
	d := noticeData{ID: id, State: pn.State, Partner: s.caller.Partner, URL: pn.URL, Stamp: pn.Stamp,
		Of: len(pn.Schedule), Schedule: formatSchedule(pn.Schedule), Earlier: pn.Earlier, CanRetry: pn.CanResend,
		Flash: portalFlashes[r.URL.Query().Get("done")]}
	var next *nextMark
	switch {
	case pn.Pending.N > 0:
		d.Next, d.NextDue, d.InFlight = pn.Pending.N, pn.Pending.Due, pn.Pending.InFlight
		next = &nextMark{N: pn.Pending.N, Due: pn.Pending.Due}
	case pn.State == notifier.StateParked && len(pn.Attempts) > 0 && !pn.Attempts[len(pn.Attempts)-1].Next.IsZero():
		last := pn.Attempts[len(pn.Attempts)-1]
		d.NextDue = last.Next
		next = &nextMark{N: last.N + 1, Due: last.Next}
	}
	for _, a := range pn.Attempts {
		a.Response = strings.ToValidUTF8(a.Response, "�")
		d.Attempts = append(d.Attempts, attemptRow{Attempt: a, Slot: a.Due, Late: a.Lateness()})
	}
	var now time.Time
	if pn.State == notifier.StatePending || pn.State == notifier.StateParked {
		now = p.o.Now()
	}
	if !d.Stamp.IsZero() {
		var sched []time.Duration
		if pn.Schedule != nil {
			sched = pn.Schedule
		}
		tl := drawTimeline(d.Stamp, sched, pn.Attempts, next, now)
		d.Timeline = &tl
	}
	p.render(w, r, s, http.StatusOK, "notice", "Notice "+id, d)
}

// retry has one of the partner's ended notices sent again (see
// notifier.Portal.Resend): rate-limited per partner, logged with the
// token's fingerprint.
func (p *portal) retry(w http.ResponseWriter, r *http.Request, s partnerSession) {
	id := r.PathValue("id")
	_, err := p.o.Portal.Resend(r.Context(), s.caller, id)
	var rl *notifier.RateLimitError
	switch {
	case err == nil:
		http.Redirect(w, r, portalNoticeURL(id)+"?done=retried", http.StatusSeeOther)
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int((rl.RetryAfter+time.Second-1)/time.Second)))
		p.message(w, r, s, http.StatusTooManyRequests, "Too many re-sends and test notices for now: try again in "+
			rl.RetryAfter.Round(time.Second).String()+".")
	case errors.Is(err, notifier.ErrNotFound):
		p.message(w, r, s, http.StatusNotFound, "No such notice.")
	case errors.Is(err, notifier.ErrDuplicate):
		p.message(w, r, s, http.StatusConflict, "This notice is pending already.")
	case errors.Is(err, notifier.ErrInvalidNotice):
		p.message(w, r, s, http.StatusConflict, "Its URL is no longer one of yours, so it is not sent again.")
	default:
		p.fail(w, r, s, err)
	}
}

// test sends the partner a test notice to one of its url_prefix.
func (p *portal) test(w http.ResponseWriter, r *http.Request, s partnerSession) {
	_, err := p.o.Portal.SendTest(r.Context(), s.caller, r.PostFormValue("url"))
	var rl *notifier.RateLimitError
	switch {
	case err == nil:
		http.Redirect(w, r, "/portal/?done=tested", http.StatusSeeOther)
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int((rl.RetryAfter+time.Second-1)/time.Second)))
		p.message(w, r, s, http.StatusTooManyRequests, "Too many re-sends and test notices for now: try again in "+
			rl.RetryAfter.Round(time.Second).String()+".")
	case errors.Is(err, notifier.ErrNoPrefix), errors.Is(err, notifier.ErrInvalidNotice):
		p.message(w, r, s, http.StatusBadRequest, "A test notice goes only to one of your own URL prefixes.")
	default:
		p.fail(w, r, s, err)
	}
}

// feed is the live feed of the partner's attempts.
func (p *portal) feed(w http.ResponseWriter, r *http.Request, s partnerSession) {
	f := notifier.AttemptFilter{Partner: s.caller.Partner}
	ctx := r.Context()
	as, err := p.o.Log.Last(ctx, f, feedRows)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if f.AfterSeq, err = p.core.lastSeq(ctx); err != nil {
		p.fail(w, r, s, err)
		return
	}
	rows := make([]feedRow, 0, len(as))
	for _, a := range slices.Backward(as) {
		rows = append(rows, portalRow(a))
	}
	p.render(w, r, s, http.StatusOK, "feed", "Live feed", struct {
		Rows   []feedRow
		Events string
		Max    int
	}{rows, "/portal/feed/events?after=" + itoa64(f.AfterSeq), 200})
}

// events streams the partner's new attempts, as the console's feed does
// for everyone's.
func (p *portal) events(w http.ResponseWriter, r *http.Request, s partnerSession) {
	f := notifier.AttemptFilter{Partner: s.caller.Partner}
	after := r.Header.Get("Last-Event-ID")
	if after == "" {
		after = r.URL.Query().Get("after")
	}
	var err error
	if f.AfterSeq, err = strconv.ParseInt(after, 10, 64); err != nil || f.AfterSeq < 0 {
		if f.AfterSeq, err = p.core.lastSeq(r.Context()); err != nil {
			p.o.Logger.Error("portal: store failed", "route", r.Pattern, "err", err)
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	p.core.streamAttempts(w, r, f, portalRow)
}

// portalRow is a feed row linking to the portal's notice page.
func portalRow(a notifier.Attempt) feedRow {
	row := feedRowOf(a)
	row.Href = portalNoticeURL(a.NoticeID)
	return row
}
