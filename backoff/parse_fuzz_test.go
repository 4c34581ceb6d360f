package backoff

import (
	"errors"
	"slices"
	"testing"
)

// FuzzParse feeds Parse any list, as --schedule and the "schedule" field of
// an input line may: it must not panic, every refusal must wrap ErrInvalid,
// and a schedule it accepts must keep the promises Schedule documents and
// read back unchanged from its String, which is how it is stored.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"0,10,30,60,120,300",
		"0s,500ms,2s",
		" 0 , 0.3 , 0.6 ",
		"30m",
		"1,1",
		"0,1m30s",
		"720h",
		"2592000",
		"2592000.000000001",
		"0,2592001",
		"10,5",
		"-1",
		"-1e-10",
		"1e-10",
		"0x1p-2",
		"NaN",
		"Inf",
		"1e30",
		"9223372036854775807ns",
		"1h,2x",
		"",
		",",
		"0,",
		"alipay",
		" WeChat ",
		"standard-webhooks",
		"alipay,1",
		"alipy",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, list string) {
		s, err := Parse(list)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", list, err)
			}
			return
		}
		if len(s) == 0 || len(s) > MaxAttempts {
			t.Fatalf("Parse(%q) = %v: %d attempts, want 1 to %d", list, s, len(s), MaxAttempts)
		}
		if s[0] < 0 {
			t.Fatalf("Parse(%q) = %v: negative first offset", list, s)
		}
		for i := 1; i < len(s); i++ {
			if s[i] < s[i-1] {
				t.Fatalf("Parse(%q) = %v: offset %d decreases", list, s, i+1)
			}
		}
		if last := s[len(s)-1]; last > MaxOffset {
			t.Fatalf("Parse(%q) = %v: last offset %s beyond %s", list, s, last, MaxOffset)
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %v, but Parse(%q): %v", list, s, s.String(), err)
		}
		if !slices.Equal(again, s) {
			t.Fatalf("Parse(%q) = %v, but Parse(%q) = %v", list, s, s.String(), again)
		}
		// The result is the caller's: changing it must not change what the
		// next Parse returns (presets are shared).
		s[0] = -1
		if next, _ := Parse(list); !slices.Equal(next, again) {
			t.Fatalf("Parse(%q) = %v after the caller changed an earlier result, want %v", list, next, again)
		}
	})
}
