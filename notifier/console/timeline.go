package console

import (
	"slices"
	"strconv"
	"time"

	"github.com/notifier/notifier/notifier"
)

// Timeline geometry, in SVG user units (pixels).
const (
	tlMargin  = 48
	tlMinStep = 90
	tlMaxStep = 240
	tlSpan    = 840 // what the steps share before they hit a bound
	tlHeight  = 160
	tlAxisY   = 72
	// tlStampLabel is how far right of the stamp the "stamp" label and
	// half a "now" label (centred on its line) reach, with a gap, at the
	// stylesheet's 12px; tlRow is one row of labels.
	tlStampLabel = 60
	tlRow        = 18
)

// timeline is a notice's schedule drawn on one axis: a tick per slot
// (stamp + S[n-1]), a dot per attempt where it actually started, the next
// due time and, while the notice waits, now.
//
// The axis is piecewise linear through the slots: consecutive slots are
// one step apart whatever their gap, and a time between two slots sits
// between them in proportion. So every slot of a schedule such as
// 0,10s,...,24h is visible, and an attempt's lateness is drawn against
// the gap it falls in (and labelled in milliseconds).
type timeline struct {
	Width, Height, AxisY int
	X0, X1               float64
	Slots                []slotMark
	Attempts             []attemptMark
	Next                 *nextMark
	// NowX is where now is; 0 when the notice has ended.
	NowX float64
	// NowLabelY is the baseline of the "now" label: the bottom row, as
	// the stamp's, or the row above it when now is too close to the
	// stamp for the two words to share a row (a notice just enqueued).
	NowLabelY int
}

type slotMark struct {
	N        int
	Offset   time.Duration
	OffsetMS int64
	Due      time.Time
	X        float64
}

type attemptMark struct {
	N                int
	X                float64
	Outcome          notifier.Outcome
	Status           int
	Late             time.Duration
	LateMS, OffsetMS string
	Start            time.Time
	// LabelY is where the labels start: lower than the previous
	// attempt's when the two are too close to share a line.
	LabelY int
}

type nextMark struct {
	N   int
	Due time.Time
	X   float64
}

// drawTimeline lays out the timeline of a notice stamped at stamp. sched
// may be nil when the schedule is not known: the slots are then those the
// attempts and next name.
func drawTimeline(stamp time.Time, sched []time.Duration, attempts []notifier.Attempt, next *nextMark, now time.Time) timeline {
	slots := map[int]time.Duration{}
	for i, off := range sched {
		slots[i+1] = off
	}
	if sched == nil {
		for _, a := range attempts {
			slots[a.N] = a.Due.Sub(stamp)
		}
		if next != nil {
			slots[next.N] = next.Due.Sub(stamp)
		}
	}
	knots := []time.Duration{0}
	for _, off := range slots {
		knots = append(knots, off)
	}
	slices.Sort(knots)
	knots = slices.Compact(knots)
	// A tail after the last slot, as long as the longest gap, holds late
	// attempts and the labels; anything later stretches it.
	tail := time.Second
	for i := 1; i < len(knots); i++ {
		tail = max(tail, knots[i]-knots[i-1])
	}
	end := knots[len(knots)-1] + tail
	for _, a := range attempts {
		end = max(end, a.Start.Add(a.Duration).Sub(stamp))
	}
	if next != nil {
		end = max(end, next.Due.Sub(stamp))
	}
	if !now.IsZero() {
		end = max(end, now.Sub(stamp))
	}
	knots = append(knots, end)

	step := min(max(float64(tlSpan)/float64(len(knots)-1), tlMinStep), tlMaxStep)
	x := func(t time.Time) float64 {
		d := t.Sub(stamp)
		i, found := slices.BinarySearch(knots, d)
		switch {
		case found:
			return tlMargin + float64(i)*step
		case i == 0:
			return tlMargin
		case i == len(knots):
			return tlMargin + float64(len(knots)-1)*step
		}
		frac := float64(d-knots[i-1]) / float64(knots[i]-knots[i-1])
		return tlMargin + (float64(i-1)+frac)*step
	}
	tl := timeline{Height: tlHeight, AxisY: tlAxisY, X0: tlMargin, X1: tlMargin + float64(len(knots)-1)*step}
	tl.Width = int(tl.X1) + tlMargin
	ns := make([]int, 0, len(slots))
	for n := range slots {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	for _, n := range ns {
		due := stamp.Add(slots[n])
		tl.Slots = append(tl.Slots, slotMark{N: n, Offset: slots[n], OffsetMS: slots[n].Milliseconds(), Due: due, X: x(due)})
	}
	for i, a := range attempts {
		m := attemptMark{N: a.N, X: x(a.Start), Outcome: a.Outcome, Status: a.Status, Late: a.Lateness(),
			LateMS: msString(a.Lateness()), OffsetMS: msString(a.Start.Sub(stamp)), Start: a.Start, LabelY: tlAxisY + 28}
		if i > 0 && m.X-tl.Attempts[i-1].X < 60 && tl.Attempts[i-1].LabelY == m.LabelY {
			m.LabelY += 30
		}
		tl.Attempts = append(tl.Attempts, m)
	}
	if next != nil {
		n := *next
		n.X = x(n.Due)
		tl.Next = &n
	}
	if !now.IsZero() {
		tl.NowX = x(now)
		tl.NowLabelY = tlHeight - 4
		if tl.NowX-tl.X0 < tlStampLabel {
			tl.NowLabelY -= tlRow
		}
	}
	return tl
}

// msString is d in milliseconds with microsecond precision.
func msString(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
}
