package notifier

import "time"

// wakeRescan is how long the waker reads the due index from its watermark
// before it reads it from the start again. Everything armed at or after
// its last read lies past the watermark, and an attempt armed already due
// comes with a wake hint, which resets it too; the rescan is for the rest:
// an attempt armed by a host whose clock is behind, or handed back
// (Release) with an earlier due time. It costs one full read a second
// instead of one per wake-up.
const wakeRescan = time.Second

// wakeRemember bounds the touched triggers remembered between rescans
// (a few MB), for a backlog of millions overdue at once, such as after
// a long downtime: past it, what lies before the watermark is forgotten
// and may be touched again by the next rescan.
const wakeRemember = 1 << 16

// wakeWindow is what the waker remembers between reads of the due index:
// where the next read starts, and which triggers it has touched there.
// Under a backlog the index holds thousands of overdue triggers whose
// events are on their way; reading them all again on every wake-up cost
// Redis about a millisecond per read and serve as much in decoding and map
// work, hundreds of times a second. Its methods decide; wakeOnce does the
// I/O.
type wakeWindow struct {
	// from is where the next read starts (included); zero: the start of
	// the index.
	from time.Time
	// rescanAt is when from goes back to zero.
	rescanAt time.Time
	// touched holds the triggers touched and not yet seen gone from the
	// index, by their keys (hashing a Trigger, with its two time.Time, costs
	// several times more).
	touched map[triggerKey]touch
}

// touch is what the waker knows of a trigger it touched: the due time it
// was read with (a trigger whose lease ran out is due again, later) and
// whether its key was still there, not yet due by Redis's clock, so it
// must be touched again.
type touch struct {
	due   time.Time
	again bool
}

// reset makes the next read start at the beginning of the index.
func (w *wakeWindow) reset() {
	w.from = time.Time{}
}

// start returns where the read at now starts: from, or the beginning of
// the index once wakeRescan has passed since the last rescan.
func (w *wakeWindow) start(now time.Time) time.Time {
	if w.touched == nil {
		w.touched = map[triggerKey]touch{}
	}
	if !now.Before(w.rescanAt) {
		w.from = time.Time{}
	}
	if w.from.IsZero() {
		w.rescanAt = now.Add(wakeRescan)
	}
	return w.from
}

// fresh returns the triggers of page not touched yet.
func (w *wakeWindow) fresh(page []Trigger) []Trigger {
	var todo []Trigger
	for _, t := range page {
		if m, ok := w.touched[keyOf(t)]; !ok || m.again || !m.due.Equal(t.Due) {
			todo = append(todo, t)
		}
	}
	return todo
}

// advance records a read through upto that returned page (full: as many
// as were asked for, so more may follow at its last due time) and the
// touch of todo, alive[i] saying whether todo[i]'s key was still there.
// The next read starts after what is settled: just after upto, or at the
// page's last due time if it was full (ties with it may follow), or at the
// earliest trigger still to touch again.
//
// What was touched is remembered until a read from the beginning of the
// index shows it gone (claimed, or ended): such a read holds everything
// due before its first trigger. So a rescan skips the triggers touched
// since the last one and not claimed yet, whose events are on their way
// (touching them again did nothing but cost a command each).
func (w *wakeWindow) advance(page []Trigger, full bool, upto time.Time, todo []Trigger, alive []bool) {
	rescan := w.from.IsZero()          // this read started at the beginning
	from := upto.Add(time.Millisecond) // due times are whole milliseconds
	if full && len(page) > 0 {
		from = page[len(page)-1].Due
	}
	for i, t := range todo {
		w.touched[keyOf(t)] = touch{due: t.Due, again: alive[i]}
		if alive[i] && t.Due.Before(from) {
			from = t.Due
		}
	}
	w.from = from
	var gone time.Time // what is due before it is forgotten
	switch {
	case rescan && len(page) > 0:
		gone = page[0].Due
	case rescan:
		gone = upto.Add(time.Millisecond) // nothing is left through upto
	case len(w.touched) > wakeRemember:
		gone = from // the next rescan touches these again
	default:
		return
	}
	for k, m := range w.touched {
		if m.due.Before(gone) {
			delete(w.touched, k)
		}
	}
}
