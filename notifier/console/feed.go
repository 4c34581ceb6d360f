package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/notifier/notifier/notifier"
)

const (
	// feedRows is how many recent attempts the feed page starts with.
	feedRows = 50
	// feedPoll is how often the stream looks for new attempts: new rows
	// reach the browser well within a second of being committed.
	feedPoll = 200 * time.Millisecond
	// feedPing keeps an idle stream open through proxies.
	feedPing = 15 * time.Second
)

// snippetLen bounds the reply shown in the live feed.
const snippetLen = 160

// feedRow is one attempt in the feed: the page's table and the stream's
// events both use it. The script puts it into the page as text only.
type feedRow struct {
	Seq      int64  `json:"seq"`
	ID       string `json:"id"`
	Href     string `json:"href"`
	Partner  string `json:"partner"`
	N        int    `json:"n"`
	Outcome  string `json:"outcome"`
	Status   int    `json:"status"`
	Start    string `json:"start"`
	Late     string `json:"late"`
	Took     string `json:"took"`
	URL      string `json:"url"`
	Error    string `json:"error,omitempty"`
	Response string `json:"response,omitempty"`
}

func feedRowOf(a notifier.Attempt) feedRow {
	resp := a.Response
	if len(resp) > snippetLen {
		cut := snippetLen
		for cut > 0 && !utf8.RuneStart(resp[cut]) {
			cut--
		}
		resp = resp[:cut] + "…"
	}
	return feedRow{Seq: a.Seq, ID: a.NoticeID, Href: noticeURL(a.NoticeID), Partner: a.Partner, N: a.N, Outcome: string(a.Outcome),
		Status: a.Status, Start: formatTime(a.Start), Late: notifier.FormatDuration(a.Lateness()), Took: notifier.FormatDuration(a.Duration),
		URL: notifier.RedactURL(a.URL), Error: a.Error, Response: strings.ToValidUTF8(resp, "\uFFFD")}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// feedFilter reads the id and outcome filters of the feed, as `tail`'s.
func feedFilter(r *http.Request) (notifier.AttemptFilter, error) {
	q := r.URL.Query()
	f := notifier.AttemptFilter{NoticeID: q.Get("id")}
	if o := q.Get("outcome"); o != "" {
		out, err := notifier.ParseOutcome(o)
		if err != nil {
			return f, err
		}
		f.Outcome = out
	}
	return f, nil
}

// feed is the live attempt feed: the last attempts, newest first, then
// every new one as the stream brings it.
func (h *handler) feed(w http.ResponseWriter, r *http.Request, s session) {
	f, err := feedFilter(r)
	if err != nil {
		h.message(w, r, s, http.StatusBadRequest, "Unknown outcome: want delivered, retry, gave-up, blocked or error.")
		return
	}
	ctx := r.Context()
	as, err := h.o.Log.Last(ctx, f, feedRows)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	after, err := h.lastSeq(ctx)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	rows := make([]feedRow, 0, len(as))
	for _, a := range slices.Backward(as) {
		rows = append(rows, feedRowOf(a))
	}
	f.AfterSeq = after
	h.render(w, r, s, http.StatusOK, "feed", "Live feed", struct {
		Rows        []feedRow
		Events      string
		ID, Outcome string
		Outcomes    []notifier.Outcome
		Max         int
	}{rows, eventsURL(f), f.NoticeID, string(f.Outcome),
		[]notifier.Outcome{notifier.Delivered, notifier.Retry, notifier.GaveUp, notifier.Blocked, notifier.Error}, 200})
}

// lastSeq is the Seq of the newest attempt in the log, 0 if none.
func (h *handler) lastSeq(ctx context.Context) (int64, error) {
	last, err := h.o.Log.Last(ctx, notifier.AttemptFilter{}, 1)
	if err != nil || len(last) == 0 {
		return 0, err
	}
	return last[0].Seq, nil
}

// events streams new attempts as Server-Sent Events ("attempt", with the
// Seq as the event id), like `notifier tail -f`: from after the Seq in
// Last-Event-ID (a reconnecting browser) or ?after=, else from the end of
// the log. It ends when the browser leaves or Options.Done is closed.
func (h *handler) events(w http.ResponseWriter, r *http.Request, s session) {
	f, err := feedFilter(r)
	if err != nil {
		http.Error(w, "unknown outcome", http.StatusBadRequest)
		return
	}
	after := r.Header.Get("Last-Event-ID")
	if after == "" {
		after = r.URL.Query().Get("after")
	}
	if f.AfterSeq, err = strconv.ParseInt(after, 10, 64); err != nil || f.AfterSeq < 0 {
		if f.AfterSeq, err = h.lastSeq(r.Context()); err != nil {
			h.o.Logger.Error("console: store failed", "route", r.Pattern, "err", err)
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	h.streamAttempts(w, r, f, feedRowOf)
}

// streamAttempts streams the attempts matching f, each as row makes it,
// until the browser leaves or Options.Done is closed. The partner portal's
// feed is the same stream with the partner in f.
func (h *handler) streamAttempts(w http.ResponseWriter, r *http.Request, f notifier.AttemptFilter, row func(notifier.Attempt) feedRow) {
	// The stream outlives the server's read and write timeouts, which
	// are meant for single requests.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil || rc.Flush() != nil {
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if h.o.Done != nil {
		go func() {
			select {
			case <-h.o.Done:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	// Follow runs in its own goroutine and hands rows over, so this one
	// alone writes to w: rows and pings.
	rows := make(chan notifier.Attempt)
	done := make(chan error, 1)
	go func() {
		done <- h.o.Log.Follow(ctx, f, feedPoll, func(a notifier.Attempt) error {
			select {
			case rows <- a:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	ping := time.NewTicker(feedPing)
	defer ping.Stop()
	for {
		var err error
		select {
		case a := <-rows:
			var b []byte
			if b, err = json.Marshal(row(a)); err == nil {
				_, err = fmt.Fprintf(w, "event: attempt\nid: %d\ndata: %s\n\n", a.Seq, b)
			}
		case <-ping.C:
			_, err = fmt.Fprint(w, ": ping\n\n")
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				h.o.Logger.Error("console: feed stopped", "err", err)
			}
			return
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil { // the browser went away
			cancel()
			<-done
			return
		}
	}
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
