package notifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// tailSnippet is how much of a reply one tail line shows; --json shows all
// that was stored.
const tailSnippet = 80

// Printable returns s safe to print to a terminal: what a terminal would act
// on instead of showing is escaped as strconv.Quote escapes it. That is C0
// controls (tab and newline too: \t, \n, \r, \x1b), DEL (\x7f), C1 controls
// (\u009b), the Unicode bidirectional controls, which reorder what is shown
// (\u202e), the line and paragraph separators, and each byte that is not
// valid UTF-8 (\xff). Everything else, other Unicode included, is kept as
// is and s is not quoted, so ordinary text prints unchanged. It is for
// eyes, not parsers: a backslash is not escaped (--json output is exact).
// Every line the CLI makes for people from stored data goes through it.
func Printable(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || escaped(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case escaped(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// escaped reports whether Printable escapes r.
func escaped(r rune) bool {
	switch {
	case unicode.IsControl(r): // C0, DEL and C1
		return true
	case r == '\u061c', r == '\u200e', r == '\u200f', r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
		return true // bidirectional controls
	case r == '\u2028', r == '\u2029':
		return true // line and paragraph separators
	}
	return false
}

// FormatAttempt renders a for `notifier tail`: one line, key=value after the
// start time, id, attempt number and outcome, so it reads well and greps
// well. Times are UTC with milliseconds. Stored text is escaped (Printable,
// or quoted for the error and the reply).
func FormatAttempt(a Attempt) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s #%d %s", stamp(a.Start), Printable(a.NoticeID), a.N, Printable(string(a.Outcome)))
	fmt.Fprintf(&b, " status=%s due=%s late=%s took=%s", statusText(a.Status), stamp(a.Due), FormatDuration(a.Lateness()), FormatDuration(a.Duration))
	if !a.Next.IsZero() {
		fmt.Fprintf(&b, " next=%s", stamp(a.Next))
	}
	fmt.Fprintf(&b, " url=%s", Printable(a.URL))
	if a.Error != "" {
		fmt.Fprintf(&b, " error=%s", strconv.Quote(a.Error))
	}
	if a.Response != "" {
		r := a.Response
		if len(r) > tailSnippet {
			cut := tailSnippet
			for cut > 0 && !utf8.RuneStart(r[cut]) {
				cut-- // do not split a character
			}
			r = r[:cut] + "…"
		}
		fmt.Fprintf(&b, " reply=%s", strconv.Quote(r))
	}
	return b.String()
}

// FleetAttempt is one entry of the fleet stream that `serve --fleet-log`
// writes: an attempt and the serve host that made it.
type FleetAttempt struct {
	Host    string
	Attempt Attempt
}

// ErrNoFleetStream is returned by FollowFleet, when it is not to follow,
// if the fleet stream does not exist: no serve with --fleet-log has made
// an attempt on that Redis.
var ErrNoFleetStream = errors.New("no serve writes the fleet stream (start serve with --fleet-log)")

// FormatFleetAttempt renders a line of `notifier tail --fleet`: the serve
// host that made attempt a, two spaces, and FormatAttempt(a). The host comes
// from the shared stream, so it is escaped like the rest.
func FormatFleetAttempt(host string, a Attempt) string {
	return Printable(host) + "  " + FormatAttempt(a)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Plural is n and noun, the noun with an s unless n is 1: "1 parked notice",
// "2 parked notices". Every count the CLI and the console print in words
// goes through it (the nouns used are all regular).
func Plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.FormatInt(n, 10) + " " + noun + "s"
}

// statusText is an HTTP status as the CLI prints it: "-" when there was no
// reply (a refused connection, a timeout), in tail and status alike.
func statusText(code int) string {
	if code == 0 {
		return "-"
	}
	return strconv.Itoa(code)
}

// FormatDuration is the one way the CLI and the console print a measured
// duration (lateness, how long an attempt took, how long until or since a
// due time), so "took" reads the same in tail, status and the browser:
// under 1ms to 10µs ("0.53ms"; "<0.01ms" below that, never a bare 0 for a
// real wait), under 10ms to 0.1ms ("2.3ms"), under 1s to 1ms ("123ms"),
// under a minute to 10ms ("1.23s"), then to the second without zero units
// ("2m10s", "1h", "1h5m"). Only ASCII: it greps and pipes well.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < 0:
		return "-" + FormatDuration(-d)
	case d < time.Millisecond:
		if d < 10*time.Microsecond {
			return "<0.01ms"
		}
		return strconv.FormatFloat(float64(d.Round(10*time.Microsecond))/float64(time.Millisecond), 'f', -1, 64) + "ms"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d.Round(100*time.Microsecond))/float64(time.Millisecond), 'f', -1, 64) + "ms"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// AttemptJSON is the shape of one attempt in `notifier tail --json`: every
// column of the attempt log. Field names are a contract for scripts.
type AttemptJSON struct {
	Seq        int64      `json:"seq"`
	ID         string     `json:"id"`
	Stamp      time.Time  `json:"stamp"`
	N          int        `json:"n"`
	Due        time.Time  `json:"due"`
	Start      time.Time  `json:"start"`
	DurationMS float64    `json:"duration_ms"`
	LateMS     float64    `json:"late_ms"`
	URL        string     `json:"url"`
	Status     int        `json:"status"`
	Outcome    Outcome    `json:"outcome"`
	Error      string     `json:"error"`
	Response   string     `json:"response"`
	Next       *time.Time `json:"next_due"`
}

// MarshalAttempt returns a as one line of JSON.
func MarshalAttempt(a Attempt) ([]byte, error) {
	j := AttemptJSON{
		Seq: a.Seq, ID: a.NoticeID, Stamp: a.Stamp.UTC(), N: a.N, Due: a.Due.UTC(), Start: a.Start.UTC(),
		DurationMS: float64(a.Duration.Microseconds()) / 1000, LateMS: float64(a.Lateness().Microseconds()) / 1000,
		URL: a.URL, Status: a.Status, Outcome: a.Outcome, Error: a.Error, Response: a.Response,
	}
	if !a.Next.IsZero() {
		next := a.Next.UTC()
		j.Next = &next
	}
	return json.Marshal(j)
}

// Attempt converts j back (Seq, and sub-microsecond precision, aside).
func (j AttemptJSON) Attempt() Attempt {
	a := Attempt{Seq: j.Seq, NoticeID: j.ID, Stamp: j.Stamp, N: j.N, Due: j.Due, Start: j.Start,
		Duration: time.Duration(j.DurationMS * float64(time.Millisecond)), URL: j.URL, Status: j.Status,
		Outcome: j.Outcome, Error: j.Error, Response: j.Response}
	if j.Next != nil {
		a.Next = *j.Next
	}
	return a
}

// ErrBadTime is wrapped by ParseWhen.
var ErrBadTime = errors.New("bad time")

// ParseWhen reads a since/until value as the CLI and the console take it:
// RFC 3339, a date (UTC), or a duration meaning that long before now. Empty
// is the zero time.
func ParseWhen(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%w %q: want RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23) or a duration ago (2h)", ErrBadTime, v)
}

// Format renders s for a terminal, one "key: value" per line, stored text
// escaped (Printable).
func (s Status) Format(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "id:       %s\nstate:    %s\n", Printable(s.ID), Printable(string(s.State)))
	if s.Stamp != nil {
		fmt.Fprintf(&b, "stamp:    %s\n", stamp(*s.Stamp))
	}
	fmt.Fprintf(&b, "attempts: %d", s.Attempts)
	if s.MaxAttempts > 0 {
		fmt.Fprintf(&b, " of %d", s.MaxAttempts)
	}
	b.WriteString("\n")
	if s.NextDue != nil {
		// A second past due with no attempt in flight means no serve is
		// making it: say so, rather than "in 0s" for ever.
		if late := now.Sub(*s.NextDue); late >= time.Second && !s.InFlight {
			fmt.Fprintf(&b, "next:     #%d due %s (overdue by %s)", s.NextAttempt, stamp(*s.NextDue), FormatDuration(late.Round(time.Second)))
		} else {
			fmt.Fprintf(&b, "next:     #%d due %s (in %s)", s.NextAttempt, stamp(*s.NextDue), FormatDuration(max(s.NextDue.Sub(now), 0)))
		}
		if s.InFlight {
			b.WriteString(", in flight")
		}
		b.WriteString("\n")
	}
	if s.Parked != nil {
		// Why it waits, so an operator knows whom to resume and why it
		// was paused.
		fmt.Fprintf(&b, "parked:   #%d waits until partner %s resumes", s.NextAttempt, Printable(s.Parked.Partner))
		var why []string
		if !s.Parked.Since.IsZero() {
			why = append(why, fmt.Sprintf("paused at %s, %s ago", stamp(s.Parked.Since), FormatDuration(max(now.Sub(s.Parked.Since), 0).Round(time.Second))))
		}
		if s.Parked.Reason != "" {
			why = append(why, "reason: "+Printable(s.Parked.Reason))
		}
		if len(why) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(why, "; "))
		}
		b.WriteString("\n")
	}
	if s.Last != nil {
		fmt.Fprintf(&b, "last:     #%d %s status=%s at %s", s.Last.N, Printable(string(s.Last.Outcome)), statusText(s.Last.Status), stamp(s.Last.Start))
		if s.Last.Error != "" {
			fmt.Fprintf(&b, " error=%s", strconv.Quote(s.Last.Error))
		}
		b.WriteString("\n")
	}
	return b.String()
}
