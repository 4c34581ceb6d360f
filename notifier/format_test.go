package notifier

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func ExampleFormatAttempt() {
	stamp := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a := Attempt{
		Seq:      7,
		NoticeID: "n_order-42",
		Stamp:    stamp,
		N:        2,
		Due:      stamp.Add(10 * time.Second),
		Start:    stamp.Add(10*time.Second + 250*time.Millisecond),
		Duration: 15 * time.Second,
		URL:      "https://partner.example/hooks?redacted",
		Status:   200,
		Outcome:  Retry,
		Error:    "read reply: timed out after 15s",
		Response: `{"ok":`,
		Next:     stamp.Add(30 * time.Second),
	}
	fmt.Println(FormatAttempt(a))
	// Output:
	// 2025-03-01T12:00:10.250Z n_order-42 #2 retry status=200 due=2025-03-01T12:00:10.000Z late=250ms took=15s next=2025-03-01T12:00:30.000Z url=https://partner.example/hooks?redacted error="read reply: timed out after 15s" reply="{\"ok\":"
}

// formatAttempt is a fully populated attempt in a non-UTC zone.
func formatAttempt() Attempt {
	zone := time.FixedZone("CET", 3600)
	stamp := time.Date(2025, 3, 1, 13, 0, 0, 0, zone)
	return Attempt{
		Seq:      7,
		NoticeID: "n_order-42",
		Stamp:    stamp,
		N:        2,
		Due:      stamp.Add(10 * time.Second),
		Start:    stamp.Add(10*time.Second + 250*time.Millisecond),
		Duration: 1500 * time.Millisecond,
		URL:      "https://partner.example/hooks?redacted",
		Status:   503,
		Outcome:  Retry,
		Error:    "partner busy",
		Response: "try later",
		Next:     stamp.Add(30 * time.Second),
	}
}

func TestFormatAttempt(t *testing.T) {
	long := make([]byte, 100)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	tests := []struct {
		name   string
		change func(a *Attempt)
		want   string
	}{
		{
			name:   "AllFieldsInUTC",
			change: func(*Attempt) {},
			want: `2025-03-01T12:00:10.250Z n_order-42 #2 retry status=503 due=2025-03-01T12:00:10.000Z late=250ms took=1.5s` +
				` next=2025-03-01T12:00:30.000Z url=https://partner.example/hooks?redacted error="partner busy" reply="try later"`,
		},
		{
			name: "NoResponseShowsADash",
			change: func(a *Attempt) {
				a.Status, a.Response, a.Next, a.Outcome = 0, "", time.Time{}, GaveUp
			},
			want: `2025-03-01T12:00:10.250Z n_order-42 #2 gave-up status=- due=2025-03-01T12:00:10.000Z late=250ms took=1.5s` +
				` url=https://partner.example/hooks?redacted error="partner busy"`,
		},
		{
			name: "LongReplyIsCut",
			change: func(a *Attempt) {
				a.Status, a.Error, a.Outcome, a.Next = 200, "", Delivered, time.Time{}
				a.Response = string(long)
			},
			want: `2025-03-01T12:00:10.250Z n_order-42 #2 delivered status=200 due=2025-03-01T12:00:10.000Z late=250ms took=1.5s` +
				` url=https://partner.example/hooks?redacted reply="` + string(long[:tailSnippet]) + `…"`,
		},
		{
			name: "TerminalEscapesInIDAndURLAreEscaped",
			change: func(a *Attempt) {
				a.NoticeID, a.URL = "n\x1b[2J\r", "https://partner.example/\x1b]0;pwned\a\u009b\xff"
				a.Error, a.Response, a.Next = "e\x1b[2J\r", "r\x1b[2J\r", time.Time{}
			},
			want: `2025-03-01T12:00:10.250Z n\x1b[2J\r #2 retry status=503 due=2025-03-01T12:00:10.000Z late=250ms took=1.5s` +
				` url=https://partner.example/\x1b]0;pwned\a\u009b\xff error="e\x1b[2J\r" reply="r\x1b[2J\r"`,
		},
		{
			name: "ControlCharactersAreQuoted",
			change: func(a *Attempt) {
				a.Error, a.Response, a.Next = "line1\nline2", "a\tb", time.Time{}
			},
			want: `2025-03-01T12:00:10.250Z n_order-42 #2 retry status=503 due=2025-03-01T12:00:10.000Z late=250ms took=1.5s` +
				` url=https://partner.example/hooks?redacted error="line1\nline2" reply="a\tb"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := formatAttempt()
			tt.change(&a)
			if got := FormatAttempt(a); got != tt.want {
				t.Errorf("FormatAttempt =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ASCIIKept", "n_order-42 https://p.example/h?a=b&c", "n_order-42 https://p.example/h?a=b&c"},
		{"UnicodeKept", "café ✓ 東京 🚀 \ufffd", "café ✓ 東京 🚀 \ufffd"},
		{"BackslashKept", `C:\x1b`, `C:\x1b`},
		{"Escape", "\x1b[2J", `\x1b[2J`},
		{"CarriageReturn", "ok\rFAKE", `ok\rFAKE`},
		{"NewlineAndTab", "a\nb\tc", `a\nb\tc`},
		{"OtherC0", "\x00\a\b\f\v\x07\x1f", `\x00\a\b\f\v\a\x1f`},
		{"Delete", "a\x7fb", `a\x7fb`},
		{"C1Controls", "\u0085\u009b31m\u009d", `\u0085\u009b31m\u009d`},
		{"BidiAndLineSeparators", "a\u202egnp.exe\u2066\u2028", `a\u202egnp.exe\u2066\u2028`},
		{"InvalidUTF8", "a\xffb\xc3", `a\xffb\xc3`},
		{"Empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Printable(tt.in); got != tt.want {
				t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestHumanOutputHasNoControls: whatever an attempt or a stream entry
// holds, the lines made for terminals carry no control character and no
// invalid UTF-8.
func TestHumanOutputHasNoControls(t *testing.T) {
	const evil = "\x1b[2J\r\x1b]0;pwned\a\u009b\xff"
	a := formatAttempt()
	a.NoticeID, a.URL, a.Error, a.Response, a.Outcome = "n"+evil, "https://p.example/"+evil, evil, evil, Outcome("retry"+evil)
	j := AttemptJSON{ID: a.NoticeID, N: 1, Outcome: a.Outcome, Status: 500, Error: a.Error}
	stamp := a.Stamp
	st := Status{ID: a.NoticeID, State: State("gave-up" + evil), Attempts: 1, Stamp: &stamp, Last: &j}
	for name, out := range map[string]string{
		"FormatAttempt":      FormatAttempt(a),
		"FormatFleetAttempt": FormatFleetAttempt("host"+evil, a),
		"Status.Format":      strings.ReplaceAll(st.Format(stamp), "\n", ""), // its own line ends
	} {
		if !utf8.ValidString(out) || strings.ContainsFunc(out, unicode.IsControl) {
			t.Errorf("%s = %q: has control characters or invalid UTF-8", name, out)
		}
		if !strings.Contains(out, `\x1b[2J\r`) {
			t.Errorf("%s = %q, want the escape shown as \\x1b[2J\\r", name, out)
		}
	}
}

func TestMarshalAttempt(t *testing.T) {
	wantKeys := []string{"seq", "id", "stamp", "n", "due", "start", "duration_ms", "late_ms",
		"url", "status", "outcome", "error", "response", "next_due"}
	slices.Sort(wantKeys)

	tests := []struct {
		name     string
		change   func(a *Attempt)
		wantNext any
	}{
		{"NextDueIsUTC", func(*Attempt) {}, "2025-03-01T12:00:30Z"},
		{"NextDueIsNullForAZeroNext", func(a *Attempt) { a.Next = time.Time{} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := formatAttempt()
			tt.change(&a)
			raw, err := MarshalAttempt(a)
			if err != nil {
				t.Fatalf("MarshalAttempt: %v", err)
			}
			var got map[string]any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
			keys := make([]string, 0, len(got))
			for k := range got {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("keys = %v, want %v", keys, wantKeys)
			}
			if v, ok := got["next_due"]; !ok || v != tt.wantNext {
				t.Errorf("next_due = %#v, want %#v", v, tt.wantNext)
			}
			want := map[string]any{
				"seq": 7.0, "id": "n_order-42", "n": 2.0, "status": 503.0, "outcome": "retry",
				"stamp": "2025-03-01T12:00:00Z", "due": "2025-03-01T12:00:10Z", "start": "2025-03-01T12:00:10.25Z",
				"duration_ms": 1500.0, "late_ms": 250.0, "url": "https://partner.example/hooks?redacted",
				"error": "partner busy", "response": "try later",
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
		})
	}

	t.Run("IsOneLine", func(t *testing.T) {
		a := formatAttempt()
		a.Response = "multi\nline\n"
		raw, err := MarshalAttempt(a)
		if err != nil {
			t.Fatalf("MarshalAttempt: %v", err)
		}
		if slices.Contains(raw, '\n') {
			t.Errorf("MarshalAttempt = %s, want no newline", raw)
		}
	})
}

// statusString shows s with its pointers followed.
func statusString(s Status) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestStatusFormatSaysOverdue: a next attempt past due with nothing in
// flight (no serve is making it) reads "overdue by", not "in 0s" for ever.
func TestStatusFormatSaysOverdue(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	due := now.Add(-130 * time.Second)
	soon := now.Add(1500 * time.Millisecond)
	tests := []struct {
		name     string
		next     time.Time
		inFlight bool
		want     string
	}{
		{"Overdue", due, false, "(overdue by 2m10s)"},
		{"InFlightIsNotOverdue", due, true, "(in 0s), in flight"},
		{"Soon", soon, false, "(in 1.5s)"},
		{"JustDue", now.Add(-200 * time.Millisecond), false, "(in 0s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := tt.next
			st := Status{ID: "o1", State: StatePending, Attempts: 0, MaxAttempts: 6, NextAttempt: 1, NextDue: &next, InFlight: tt.inFlight}
			if got := st.Format(now); !strings.Contains(got, tt.want) {
				t.Errorf("Format = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

// TestFormatDuration: one format for measured durations everywhere, with
// sub-millisecond values shown, not rounded to 0s.
func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{3 * time.Microsecond, "<0.01ms"},
		{500 * time.Microsecond, "0.5ms"},
		{534 * time.Microsecond, "0.53ms"},
		{2340 * time.Microsecond, "2.3ms"},
		{9 * time.Millisecond, "9ms"},
		{123456 * time.Microsecond, "123ms"},
		{1234 * time.Millisecond, "1.23s"},
		{15 * time.Second, "15s"},
		{90 * time.Second, "1m30s"},
		{130 * time.Second, "2m10s"},
		{2 * time.Minute, "2m"},
		{time.Hour + 24*time.Minute, "1h24m"},
		{time.Hour, "1h"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{-250 * time.Millisecond, "-250ms"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.d); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestMissingStatusReadsTheSame: an attempt without a reply prints
// status=- in tail and in status alike.
func TestMissingStatusReadsTheSame(t *testing.T) {
	a := formatAttempt()
	a.Status = 0
	raw, err := MarshalAttempt(a)
	if err != nil {
		t.Fatal(err)
	}
	var j AttemptJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	st := Status{ID: a.NoticeID, State: StateGaveUp, Attempts: 2, Last: &j}
	for name, out := range map[string]string{"FormatAttempt": FormatAttempt(a), "Status.Format": st.Format(a.Start)} {
		if !strings.Contains(out, " status=- ") {
			t.Errorf("%s = %q, want status=-", name, out)
		}
	}
}

func TestPlural(t *testing.T) {
	for n, want := range map[int64]string{0: "0 parked notices", 1: "1 parked notice", 2: "2 parked notices"} {
		if got := Plural(n, "parked notice"); got != want {
			t.Errorf("Plural(%d) = %q, want %q", n, got, want)
		}
	}
}
