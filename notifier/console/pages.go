package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
	// partnerWindow is how many recent attempts a partner's success rate
	// and latency are computed from.
	partnerWindow = 500
	// snippetLen bounds the reply shown in the live feed.
	snippetLen = 160
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

// noticeData is the notice page.
type noticeData struct {
	ID      string
	State   notifier.State
	Partner string
	URL     string
	Stamp   time.Time
	// Of is the schedule's length; 0 when the schedule is not known (a
	// parked notice: its payload is only read when it is sent).
	Of       int
	Schedule string
	Next     int
	NextDue  time.Time
	InFlight bool
	Attempts []attemptRow
	// Earlier counts attempts of earlier sends of the same id.
	Earlier int
	// Timeline is nil while the stamp is unknown: a parked notice
	// whose first attempt is parked.
	Timeline  *timeline
	CanRetry  bool
	CanCancel bool
	Flash     string
}

type attemptRow struct {
	notifier.Attempt
	Slot time.Time
	Late time.Duration
}

// flashes are the messages a redirect after a button may ask for; the
// query names one, so nothing from the request is echoed.
var flashes = map[string]string{
	"retried":   "Sent again with a fresh stamp: its schedule starts now.",
	"cancelled": "Cancelled: no further attempt will be made.",
}

// notice shows one notice: its state and its schedule as a timeline of
// slots and attempts, for its latest send (a retried notice starts afresh).
func (h *handler) notice(w http.ResponseWriter, r *http.Request, s session) {
	id := r.PathValue("id")
	if notifier.ValidateID(id) != nil {
		h.message(w, r, s, http.StatusNotFound, "No such notice.")
		return
	}
	ctx := r.Context()
	var pending *notifier.Notice
	p, err := h.o.Queue.PendingHeader(ctx, id)
	switch {
	case err == nil:
		pending = &p.Notice
	case !errors.Is(err, notifier.ErrNotFound):
		h.fail(w, r, s, err)
		return
	}
	redisState, err := h.o.Queue.State(ctx, id)
	if err != nil && !errors.Is(err, notifier.ErrNotFound) {
		h.fail(w, r, s, err)
		return
	}
	all, err := h.o.Log.NoticeAttempts(ctx, id)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	ended, err := h.o.Log.Ended(ctx, id)
	archived := err == nil
	if err != nil && !errors.Is(err, notifier.ErrNotFound) && !errors.Is(err, notifier.ErrCorruptArchive) {
		h.fail(w, r, s, err)
		return
	}

	// The send shown: the pending one, else the latest logged, else the
	// archived one.
	d := noticeData{ID: id, Flash: flashes[r.URL.Query().Get("done")]}
	var sched []time.Duration
	switch {
	case pending != nil:
		d.Stamp, sched, d.Partner, d.URL = pending.Stamp, pending.Schedule, pending.Partner, pending.URL
	case len(all) > 0:
		d.Stamp = all[len(all)-1].Stamp
	case archived:
		d.Stamp = ended.Notice.Stamp
	}
	if pending == nil && archived && ended.Notice.Stamp.Equal(d.Stamp) {
		sched, d.Partner, d.URL = ended.Notice.Schedule, ended.Partner, ended.Notice.URL
	}
	var attempts []notifier.Attempt
	for _, a := range all {
		if a.Stamp.Equal(d.Stamp) {
			attempts = append(attempts, a)
		} else {
			d.Earlier++
		}
	}
	st, ok := notifier.StatusOf(id, pending, p.N, p.InFlight, attempts)
	st, ok = st.WithStoreState(redisState, ok)
	if !ok {
		h.message(w, r, s, http.StatusNotFound, "No such notice: neither Redis nor the attempt log knows it.")
		return
	}
	d.State, d.Of, d.Schedule = st.State, len(sched), formatSchedule(sched)
	if d.URL == "" && len(attempts) > 0 {
		d.URL = attempts[len(attempts)-1].URL // logged redacted
	}
	d.URL = notifier.RedactURL(d.URL)
	if d.Partner == "" && len(attempts) > 0 {
		d.Partner = attempts[len(attempts)-1].Partner
	}
	var next *nextMark
	switch {
	case pending != nil:
		d.Next, d.NextDue, d.InFlight = p.N, p.Due, p.InFlight
		next = &nextMark{N: p.N, Due: p.Due}
	case st.State == notifier.StateParked && len(attempts) > 0 && !attempts[len(attempts)-1].Next.IsZero():
		last := attempts[len(attempts)-1]
		d.NextDue = last.Next
		next = &nextMark{N: last.N + 1, Due: last.Next}
	}
	for _, a := range attempts {
		a.Response = strings.ToValidUTF8(a.Response, "�")
		d.Attempts = append(d.Attempts, attemptRow{Attempt: a, Slot: a.Due, Late: a.Lateness()})
	}
	var now time.Time
	if st.State == notifier.StatePending || st.State == notifier.StateParked {
		now = h.o.Now()
	}
	if !d.Stamp.IsZero() {
		tl := drawTimeline(d.Stamp, sched, attempts, next, now)
		d.Timeline = &tl
	}
	d.CanRetry = archived && st.State != notifier.StatePending && st.State != notifier.StateParked
	d.CanCancel = st.State == notifier.StatePending || st.State == notifier.StateParked
	h.render(w, r, s, http.StatusOK, "notice", "Notice "+id, d)
}

func formatSchedule(s []time.Duration) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = formatDur(d)
	}
	return strings.Join(parts, ", ")
}

// retry sends an ended notice again with a fresh stamp, as `notifier retry`.
func (h *handler) retry(w http.ResponseWriter, r *http.Request, s session) {
	id := r.PathValue("id")
	ctx := r.Context()
	e, err := h.o.Log.Ended(ctx, id)
	switch {
	case errors.Is(err, notifier.ErrNotFound):
		h.message(w, r, s, http.StatusNotFound, "This notice never ended, so there is nothing to send again.")
		return
	case err != nil:
		h.fail(w, r, s, err)
		return
	}
	errs, err := h.intake.Resend(ctx, []notifier.Notice{e.Notice})
	if err == nil {
		err = errs[0]
	}
	switch {
	case errors.Is(err, notifier.ErrDuplicate):
		h.message(w, r, s, http.StatusConflict, "This notice is pending already.")
	case err != nil:
		h.fail(w, r, s, err)
	default:
		h.o.Logger.Info("console: notice sent again", "id", id)
		http.Redirect(w, r, noticeURL(id)+"?done=retried", http.StatusSeeOther)
	}
}

// cancel ends a pending notice, as `notifier cancel`.
func (h *handler) cancel(w http.ResponseWriter, r *http.Request, s session) {
	id := r.PathValue("id")
	switch err := h.o.Queue.Cancel(r.Context(), id); {
	case errors.Is(err, notifier.ErrNotFound):
		h.message(w, r, s, http.StatusNotFound, "Redis knows no such pending notice.")
	case errors.Is(err, notifier.ErrEnded):
		h.message(w, r, s, http.StatusConflict, "This notice has ended already.")
	case err != nil:
		h.fail(w, r, s, err)
	default:
		h.o.Logger.Info("console: notice cancelled", "id", id)
		http.Redirect(w, r, noticeURL(id)+"?done=cancelled", http.StatusSeeOther)
	}
}

// partnerRow is one partner on the partners page.
type partnerRow struct {
	Name    string
	State   notifier.PartnerState
	Sampled int
	// Success is the share of the sampled attempts that delivered.
	Success    float64
	P50, P95   time.Duration
	LastAt     time.Time
	LastStatus int
}

// partners shows each partner's pause state and, from its recent attempts,
// its success rate and latency.
func (h *handler) partners(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	names, err := h.partnerNames(ctx)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	states, err := h.o.Queue.PartnerStates(ctx, names)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	rows := make([]partnerRow, 0, len(names))
	for _, n := range names {
		as, err := h.o.Log.Last(ctx, notifier.AttemptFilter{Partner: n}, partnerWindow)
		if err != nil {
			h.fail(w, r, s, err)
			return
		}
		row := partnerRow{Name: n, State: states[n], Sampled: len(as)}
		if len(as) > 0 {
			took := make([]time.Duration, len(as))
			ok := 0
			for i, a := range as {
				took[i] = a.Duration
				if a.Outcome == notifier.Delivered {
					ok++
				}
			}
			slices.Sort(took)
			row.Success = float64(ok) / float64(len(as))
			row.P50, row.P95 = took[(len(took)-1)*50/100], took[(len(took)-1)*95/100]
			row.LastAt, row.LastStatus = as[len(as)-1].Start, as[len(as)-1].Status
		}
		rows = append(rows, row)
	}
	h.render(w, r, s, http.StatusOK, "partners", "Partners", struct {
		Partners []partnerRow
		Window   int
	}{rows, partnerWindow})
}

// partnerAction checks that the {name} of r is a configured partner.
func (h *handler) partnerAction(w http.ResponseWriter, r *http.Request, s session) (string, bool) {
	name := r.PathValue("name")
	names, err := h.partnerNames(r.Context())
	if err != nil {
		h.fail(w, r, s, err)
		return "", false
	}
	if !slices.Contains(names, name) {
		h.message(w, r, s, http.StatusNotFound, "No such partner.")
		return "", false
	}
	return name, true
}

func (h *handler) pause(w http.ResponseWriter, r *http.Request, s session) {
	name, ok := h.partnerAction(w, r, s)
	if !ok {
		return
	}
	if err := h.o.Queue.Pause(r.Context(), name, "paused from the web console"); err != nil {
		h.fail(w, r, s, err)
		return
	}
	h.o.Logger.Info("console: partner paused", "partner", name)
	http.Redirect(w, r, "/ui/partners", http.StatusSeeOther)
}

func (h *handler) resume(w http.ResponseWriter, r *http.Request, s session) {
	name, ok := h.partnerAction(w, r, s)
	if !ok {
		return
	}
	n, err := h.o.Queue.Resume(r.Context(), name)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	h.o.Logger.Info("console: partner resumed", "partner", name, "rearmed", n)
	http.Redirect(w, r, "/ui/partners", http.StatusSeeOther)
}

// eventsURL is the feed's stream with the page's filters, from after seq.
func eventsURL(f notifier.AttemptFilter) string {
	q := url.Values{}
	q.Set("after", itoa64(f.AfterSeq))
	if f.NoticeID != "" {
		q.Set("id", f.NoticeID)
	}
	if f.Outcome != "" {
		q.Set("outcome", string(f.Outcome))
	}
	return "/ui/feed/events?" + q.Encode()
}
