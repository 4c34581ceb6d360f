package console

import (
	"net/http"
	"strconv"
	"time"
)

// Defaults of Options.ListSlots and Options.ListWait.
const (
	defaultListSlots = 1
	defaultListWait  = 5 * time.Second
)

// listRetryAfter is the Retry-After of a notices list refused as busy.
const listRetryAfter = 2 * time.Second

// limited runs fn once one of the handler's list slots is free. Reading a
// list costs Redis round trips and CPU that serve's delivery shares, so a
// few people (or one impatient reload) get their lists one after another
// rather than all at once. A request that waits Options.ListWait is
// answered 503 with Retry-After; one whose client went away is dropped.
func (h *handler) limited(fn func(http.ResponseWriter, *http.Request, session)) func(http.ResponseWriter, *http.Request, session) {
	return func(w http.ResponseWriter, r *http.Request, s session) {
		wait := time.NewTimer(h.o.ListWait)
		defer wait.Stop()
		select {
		case h.lists <- struct{}{}:
			defer func() { <-h.lists }()
			fn(w, r, s)
		case <-wait.C:
			w.Header().Set("Retry-After", strconv.Itoa(int(listRetryAfter/time.Second)))
			h.message(w, r, s, http.StatusServiceUnavailable, "Busy: other notice lists are being read. Try again in a moment.")
		case <-r.Context().Done():
		}
	}
}
