package backoff

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// presets maps a lower-case name to a schedule. Each is written as the gaps
// its source publishes, so it can be checked against the source line by line,
// and accumulated into offsets from the stamp, which is how this package
// anchors every attempt: a late attempt never pushes the later ones back.
var presets = map[string]Schedule{
	// default is Default: 0, 10s, 30s, 1m, 2m, 5m from the stamp.
	"default": fromGaps(0, 10*time.Second, 20*time.Second, 30*time.Second,
		time.Minute, 3*time.Minute),

	// Alipay async notify (异步通知) docs: an immediate notice, then notices
	// 4m, 10m, 10m, 1h, 2h, 6h and 15h apart until the merchant prints
	// "success" (about 8 notices over 25 h).
	"alipay": fromGaps(0, 4*time.Minute, 10*time.Minute, 10*time.Minute,
		time.Hour, 2*time.Hour, 6*time.Hour, 15*time.Hour),

	// WeChat Pay v2 payment result notify (支付结果通知) docs: an immediate
	// notice, then 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h
	// apart, 24h4m in all.
	"wechat": fromGaps(0, 15*time.Second, 15*time.Second, 30*time.Second,
		3*time.Minute, 10*time.Minute, 20*time.Minute, 30*time.Minute,
		30*time.Minute, 30*time.Minute, 60*time.Minute, 3*time.Hour,
		3*time.Hour, 3*time.Hour, 6*time.Hour, 6*time.Hour),

	// Standard Webhooks spec, "Retry schedule" (as used by Svix): immediately,
	// then 5s, 5m, 30m, 2h, 5h, 10h and 10h after each failure. Measured from
	// the stamp instead, so the last attempt is at 27h35m5s.
	"standard-webhooks": fromGaps(0, 5*time.Second, 5*time.Minute, 30*time.Minute,
		2*time.Hour, 5*time.Hour, 10*time.Hour, 10*time.Hour),
}

// fromGaps turns published gaps between attempts into offsets from the stamp:
// offset i is the sum of gaps[0..i]. gaps[0] is the delay of the first attempt.
func fromGaps(gaps ...time.Duration) Schedule {
	s := make(Schedule, len(gaps))
	var at time.Duration
	for i, g := range gaps {
		at += g
		s[i] = at
	}
	return s
}

// Preset returns the schedule registered under name (case-insensitive,
// surrounding spaces ignored), so partners with a published retry policy can
// be matched without copying offsets by hand. The schedule is a copy the
// caller may change. ok is false for an unknown name.
func Preset(name string) (s Schedule, ok bool) {
	p, ok := presets[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return nil, false
	}
	return slices.Clone(p), true
}

// PresetNames lists the names Preset and Parse accept, sorted, for help texts
// and error messages.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for name := range presets {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Jitter returns the extra delay to add to attempt n's due time (n is
// 1-based), so notices stamped together do not retry together against a
// partner that has just come back. It is r*frac of the gap between slot n-1
// and slot n, so the spread grows with the backoff. The first attempt is never
// delayed.
//
// r is the caller's randomness in [0,1) (a value outside is clamped), which
// keeps this package free of a random source and tests deterministic. frac is
// clamped to [0,1]. The result is never negative; it is 0 for n outside the
// schedule, NaN inputs, or a decreasing pair of offsets.
func Jitter(s Schedule, n int, frac float64, r float64) time.Duration {
	if n < 2 || n > len(s) {
		return 0
	}
	if s[n-1] <= s[n-2] {
		return 0
	}
	gap := s[n-1] - s[n-2]
	if gap < 0 { // overflowed: only a hand-built schedule with negative offsets
		gap = math.MaxInt64
	}
	frac, r = clamp01(frac), clamp01(r)
	d := r * frac * float64(gap)
	if d >= math.MaxInt64 { // float64(gap) may round up past MaxInt64
		return gap
	}
	return time.Duration(d)
}

// clamp01 limits f to [0,1], mapping NaN to 0.
func clamp01(f float64) float64 {
	switch {
	case f != f || f <= 0: // NaN or not positive
		return 0
	case f >= 1:
		return 1
	}
	return f
}

// ParseJitter reads a jitter fraction for Jitter, written as a percentage
// ("10%") or a fraction ("0.1"), between 0 and 1 inclusive. Errors wrap
// ErrInvalid.
func ParseJitter(v string) (float64, error) {
	in := strings.TrimSpace(v)
	num, pct := strings.CutSuffix(in, "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if in == "" || err != nil || f != f { // ParseFloat accepts "NaN"
		return 0, fmt.Errorf("%w: jitter %s: want a percentage (10%%) or a fraction (0.1)", ErrInvalid, quote(v))
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > 1 {
		return 0, fmt.Errorf("%w: jitter %s: want 0 to 100%% (0 to 1)", ErrInvalid, quote(v))
	}
	return f, nil
}
