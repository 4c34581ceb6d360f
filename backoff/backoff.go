// Package backoff owns the retry schedule: the list of offsets, measured from a
// notice's stamp, at which its attempts are due. It is pure: no clock, no
// randomness and no I/O, so callers pass the times in.
package backoff

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxAttempts bounds the length of a schedule, so a typo cannot create a
// notice that is retried for ever.
const MaxAttempts = 100

// MaxOffset bounds the last offset of a schedule (30 days): trigger keys with
// longer TTLs are almost always a unit mistake (ms read as s).
const MaxOffset = 30 * 24 * time.Hour

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid schedule")

// Schedule is the list of attempt offsets from a notice's stamp: attempt n
// (1-based) is due at stamp + s[n-1]. Offsets never decrease, so attempts are
// ordered, and a schedule has at least one entry.
type Schedule []time.Duration

// Default is the schedule a notice gets when nobody names one: 0, 10 s, 30 s,
// 1 min, 2 min and 5 min after its stamp.
var Default = Schedule{0, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}

// Parse reads a comma-separated list of offsets, or the name of a preset (see
// PresetNames; case-insensitive) as the whole list, so every flag and field
// that takes a schedule also takes "alipay". Each item is either a number of
// seconds ("10", "0.5") or a Go duration ("500ms", "2m"). The list must be
// non-empty, non-negative, non-decreasing, at most MaxAttempts long and end no
// later than MaxOffset.
func Parse(list string) (Schedule, error) {
	list = strings.TrimSpace(list)
	if list == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if s, ok := Preset(list); ok {
		return s, nil
	}
	items := strings.Split(list, ",")
	if len(items) == 1 {
		if _, err := parseOffset(list); err != nil { // a one-word list may be a misspelt preset
			return nil, fmt.Errorf("%w: %s: %v, and not a preset (%s)",
				ErrInvalid, quote(list), err, strings.Join(PresetNames(), ", "))
		}
	}
	if len(items) > MaxAttempts {
		return nil, fmt.Errorf("%w: %d attempts, at most %d", ErrInvalid, len(items), MaxAttempts)
	}
	s := make(Schedule, 0, len(items))
	for i, item := range items {
		d, err := parseOffset(strings.TrimSpace(item))
		if err != nil {
			return nil, fmt.Errorf("%w: item %d %s: %v", ErrInvalid, i+1, quote(item), err)
		}
		if i > 0 && d < s[i-1] {
			return nil, fmt.Errorf("%w: item %d (%s) is before item %d (%s); offsets are measured from the first enqueue and must not decrease",
				ErrInvalid, i+1, d, i, s[i-1])
		}
		s = append(s, d)
	}
	if last := s[len(s)-1]; last > MaxOffset {
		return nil, fmt.Errorf("%w: last offset %s is beyond %s", ErrInvalid, last, MaxOffset)
	}
	return s, nil
}

// maxQuoted is how many characters of a bad input an error quotes: enough
// to find it, while a 100 KB flag or field does not come back as a 100 KB
// log line.
const maxQuoted = 64

// quote returns s quoted as by %q, cut to its first maxQuoted characters
// with "…" after the closing quote when longer.
func quote(s string) string {
	n := 0
	for i := range s {
		if n == maxQuoted {
			return strconv.Quote(s[:i]) + "…"
		}
		n++
	}
	return strconv.Quote(s)
}

func parseOffset(item string) (time.Duration, error) {
	if item == "" {
		return 0, errors.New("empty item")
	}
	var d time.Duration
	if f, err := strconv.ParseFloat(item, 64); err == nil {
		if f != f || f > float64(MaxOffset/time.Second) || f < -float64(MaxOffset/time.Second) { // NaN or out of range
			return 0, errors.New("out of range")
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		d, err = time.ParseDuration(item)
		if err != nil {
			return 0, errors.New("not seconds or a Go duration")
		}
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}

// String formats s so that Parse reads it back unchanged.
func (s Schedule) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// Attempts is the most attempts a notice on this schedule gets.
func (s Schedule) Attempts() int { return len(s) }

// Due returns when attempt n (1-based) is due for a notice stamped at stamp,
// and false if the schedule has no attempt n.
func (s Schedule) Due(stamp time.Time, n int) (time.Time, bool) {
	if n < 1 || n > len(s) {
		return time.Time{}, false
	}
	return stamp.Add(s[n-1]), true
}

// Next returns the attempt to make after attempt n, which started at
// started and did not succeed, and when it is due:
//
//	due(n+1) = max(stamp + s[n], started + (s[n] − s[n−1]))
//
// The gap to the next attempt is measured from when attempt n started. An
// attempt that started on its slot keeps the next one on its own slot however
// long the partner took to answer (the schedule stays anchored to the stamp),
// while an attempt that started late (downtime, a backlog, a catch-up or
// partner-limit deferral: lateness that is the sender's, not the partner's)
// moves every remaining slot by its lateness, so no slot is ever skipped and
// a notice always gets every attempt of its schedule. ok is false after the
// last attempt: the notice is given up.
func (s Schedule) Next(stamp time.Time, n int, started time.Time) (next int, due time.Time, ok bool) {
	if n < 1 || n >= len(s) {
		return 0, time.Time{}, false
	}
	due = stamp.Add(s[n])
	if shifted := started.Add(s[n] - s[n-1]); shifted.After(due) {
		due = shifted
	}
	return n + 1, due, true
}
