package console

import (
	"net/http"
	"slices"
	"time"

	"github.com/notifier/notifier/notifier"
)

// partnerWindow is how many recent attempts a partner's success rate
// and latency are computed from.
const partnerWindow = 500

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
