package console

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/notifier/notifier/notifier"
)

// noticeData is the notice page.
type noticeData struct {
	ID      string
	State   notifier.State
	Partner string
	URL     string
	Stamp   time.Time
	// Of is the schedule's length; 0 when the schedule is not known (a
	// notice only the attempt log knows).
	Of       int
	Schedule string
	Next     int
	NextDue  time.Time
	InFlight bool
	Attempts []attemptRow
	// Earlier counts attempts of earlier sends of the same id.
	Earlier int
	// Timeline is nil while the stamp is unknown.
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
		parts[i] = notifier.FormatDuration(d)
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
