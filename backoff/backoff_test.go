package backoff

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Schedule
	}{
		{"0,10,30,60,120,300", Default},
		{"0s,500ms,2s", Schedule{0, 500 * time.Millisecond, 2 * time.Second}},
		{" 0 , 0.3 , 0.6 ", Schedule{0, 300 * time.Millisecond, 600 * time.Millisecond}},
		{"30m", Schedule{30 * time.Minute}},
		{"1,1", Schedule{time.Second, time.Second}},
		{"0,1m30s", Schedule{0, 90 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got.String() != tt.want.String() {
				t.Fatalf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
			}
			again, err := Parse(got.String())
			if err != nil || again.String() != got.String() {
				t.Fatalf("round trip of %v = %v, %v", got, again, err)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"", " ", ",", "0,", "-1", "0,-5s", "10,5", "abc", "1h,2x", "NaN", "Inf", "1e30",
		"31d", "0,2592001", "1e-400x",
		func() string { // too many attempts
			s := "0"
			for i := 0; i < MaxAttempts; i++ {
				s += ",1"
			}
			return s
		}(),
	} {
		t.Run(in, func(t *testing.T) {
			got, err := Parse(in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", in, got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", in, err)
			}
		})
	}
}

func TestDue(t *testing.T) {
	stamp := time.UnixMilli(1_700_000_000_000)
	tests := []struct {
		n      int
		want   time.Duration
		wantOK bool
	}{
		{0, 0, false}, {1, 0, true}, {2, 10 * time.Second, true}, {6, 300 * time.Second, true}, {7, 0, false},
	}
	for _, tt := range tests {
		got, ok := Default.Due(stamp, tt.n)
		if ok != tt.wantOK || (ok && got.Sub(stamp) != tt.want) {
			t.Errorf("Due(stamp, %d) = stamp+%v, %v; want stamp+%v, %v", tt.n, got.Sub(stamp), ok, tt.want, tt.wantOK)
		}
	}
}

func TestNext(t *testing.T) {
	stamp := time.UnixMilli(1_700_000_000_000)
	at := func(d time.Duration) time.Time { return stamp.Add(d) }
	tests := []struct {
		name     string
		n        int
		started  time.Duration
		wantN    int
		wantDue  time.Duration
		wantMore bool
	}{
		{"OnTime", 1, 0, 2, 10 * time.Second, true},
		{"StartedEarlyKeepsSlot", 1, -time.Second, 2, 10 * time.Second, true},
		{"LateStartShiftsNextByItsLateness", 2, 12 * time.Second, 3, 32 * time.Second, true},
		{"SlowPartnerKeepsAnchor", 2, 10 * time.Second, 3, 30 * time.Second, true},
		{"DowntimeSkipsNoSlot", 2, 100 * time.Second, 3, 120 * time.Second, true},
		{"DowntimePastEverySlot", 3, time.Hour, 4, time.Hour + 30*time.Second, true},
		{"ShiftedAttemptOnItsShiftedSlot", 4, time.Hour + 30*time.Second, 5, time.Hour + 90*time.Second, true},
		{"LastAttemptAfterDowntime", 5, 2 * time.Hour, 6, 2*time.Hour + 180*time.Second, true},
		{"GivesUpAfterLastSlot", 6, 300 * time.Second, 0, 0, false},
		{"GivesUpAfterLastSlotEvenIfLate", 6, time.Hour, 0, 0, false},
		{"NoAttemptZero", 0, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, due, ok := Default.Next(stamp, tt.n, at(tt.started))
			if ok != tt.wantMore || n != tt.wantN || (ok && due.Sub(stamp) != tt.wantDue) {
				t.Fatalf("Next(%d, stamp+%v) = %d, stamp+%v, %v; want %d, stamp+%v, %v",
					tt.n, tt.started, n, due.Sub(stamp), ok, tt.wantN, tt.wantDue, tt.wantMore)
			}
		})
	}
}

// TestParseErrorsQuoteAShortPrefix: an error names the bad input, but never
// more than a short prefix of it, so a 100 KB flag or field does not come
// back as a 100 KB log line.
func TestParseErrorsQuoteAShortPrefix(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	tests := []struct {
		name, in, want string
	}{
		{"OneLongWord", long, `"` + strings.Repeat("x", 64) + `"…`},
		{"LongItem", "0," + long, `item 2 "` + strings.Repeat("x", 64) + `"…`},
		{"LongMultiByteItem", "0," + strings.Repeat("é", 1000), `item 2 "` + strings.Repeat("é", 64) + `"…`},
		{"ShortItemIsWhole", "0,1x", `item 2 "1x":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse = nil error, want one")
			}
			if got := err.Error(); !strings.Contains(got, tt.want) || len(got) > 400 {
				t.Errorf("Parse error = %.500q (%d bytes), want it to contain %q and stay under 400 bytes", got, len(got), tt.want)
			}
		})
	}
}
