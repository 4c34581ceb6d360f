package backoff_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
)

// offsets parses a hand-written list of offsets, as published sources would
// be read by a person checking the presets.
func offsets(t *testing.T, list string) backoff.Schedule {
	t.Helper()
	var s backoff.Schedule
	for _, item := range strings.Split(list, ",") {
		d, err := time.ParseDuration(item)
		if err != nil {
			t.Fatalf("bad offset %q in test table: %v", item, err)
		}
		s = append(s, d)
	}
	return s
}

func TestPresetOffsets(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"default", "0s,10s,30s,1m,2m,5m"},
		{"alipay", "0s,4m,14m,24m,1h24m,3h24m,9h24m,24h24m"},
		{"wechat", "0s,15s,30s,1m,4m,14m,34m,1h4m,1h34m,2h4m,3h4m,6h4m,9h4m,12h4m,18h4m,24h4m"},
		{"standard-webhooks", "0s,5s,5m5s,35m5s,2h35m5s,7h35m5s,17h35m5s,27h35m5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := backoff.Preset(tt.name)
			if !ok {
				t.Fatalf("Preset(%q) not found", tt.name)
			}
			if want := offsets(t, tt.want); !slices.Equal(got, want) {
				t.Fatalf("Preset(%q) = %v, want %v", tt.name, got, want)
			}
			again, err := backoff.Parse(got.String())
			if err != nil || !slices.Equal(again, got) {
				t.Fatalf("Parse(%q) = %v, %v; want %v", got.String(), again, err, got)
			}
		})
	}
	if len(tests) != len(backoff.PresetNames()) {
		t.Errorf("table has %d presets, PresetNames() = %v", len(tests), backoff.PresetNames())
	}
}

func TestPresetDefaultIsDefault(t *testing.T) {
	got, _ := backoff.Preset("default")
	if !slices.Equal(got, backoff.Default) {
		t.Fatalf("Preset(default) = %v, want backoff.Default %v", got, backoff.Default)
	}
}

func TestPresetIsACopy(t *testing.T) {
	s, _ := backoff.Preset("alipay")
	s[1] = time.Hour
	again, _ := backoff.Preset("alipay")
	if again[1] != 4*time.Minute {
		t.Fatalf("changing a returned preset changed the registry: slot 2 = %v", again[1])
	}
}

func TestPresetNames(t *testing.T) {
	got := backoff.PresetNames()
	want := []string{"alipay", "default", "standard-webhooks", "wechat"}
	if !slices.Equal(got, want) {
		t.Fatalf("PresetNames() = %v, want %v", got, want)
	}
}

func TestParsePreset(t *testing.T) {
	tests := []struct {
		in, preset string
	}{
		{"alipay", "alipay"},
		{"Alipay", "alipay"},
		{"  WECHAT\t", "wechat"},
		{"Standard-Webhooks", "standard-webhooks"},
		{"default", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := backoff.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			want, _ := backoff.Preset(tt.preset)
			if !slices.Equal(got, want) {
				t.Fatalf("Parse(%q) = %v, want %v", tt.in, got, want)
			}
		})
	}
}

func TestParseUnknownPreset(t *testing.T) {
	for _, in := range []string{"alipy", "svix", "wechat,alipay", "standard webhooks"} {
		t.Run(in, func(t *testing.T) {
			got, err := backoff.Parse(in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", in, got)
			}
			if !errors.Is(err, backoff.ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", in, err)
			}
			if strings.Contains(in, ",") {
				return // a list: the error names the bad item instead
			}
			for _, name := range backoff.PresetNames() {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("Parse(%q) error %q does not list preset %q", in, err, name)
				}
			}
		})
	}
}

func TestJitter(t *testing.T) {
	s := backoff.Schedule{0, 10 * time.Second, 30 * time.Second, 30 * time.Second}
	tests := []struct {
		name    string
		s       backoff.Schedule
		n       int
		frac, r float64
		want    time.Duration
	}{
		{"FirstAttemptNever", s, 1, 1, 0.9, 0},
		{"SecondIsShareOfFirstGap", s, 2, 0.1, 0.5, 500 * time.Millisecond},
		{"ThirdIsShareOfSecondGap", s, 3, 0.5, 0.5, 5 * time.Second},
		{"ZeroR", s, 3, 1, 0, 0},
		{"ZeroFrac", s, 3, 0, 0.9, 0},
		{"AlmostWholeGap", s, 2, 1, 0.999, 9990 * time.Millisecond},
		{"EqualOffsets", s, 4, 1, 0.5, 0},
		{"FracAboveOneClamped", s, 2, 7, 0.5, 5 * time.Second},
		{"NegativeFracClamped", s, 2, -1, 0.5, 0},
		{"NegativeRClamped", s, 2, 1, -0.5, 0},
		{"RAboveOneClamped", s, 2, 1, 3, 10 * time.Second},
		{"NaNFrac", s, 2, math.NaN(), 0.5, 0},
		{"NaNR", s, 2, 1, math.NaN(), 0},
		{"InfFrac", s, 2, math.Inf(1), 0.5, 5 * time.Second},
		{"AttemptZero", s, 0, 1, 0.5, 0},
		{"NegativeAttempt", s, -3, 1, 0.5, 0},
		{"PastTheEnd", s, 5, 1, 0.5, 0},
		{"EmptySchedule", nil, 2, 1, 0.5, 0},
		{"DecreasingOffsets", backoff.Schedule{0, time.Minute, time.Second}, 3, 1, 0.5, 0},
		{"HugeGap", backoff.Schedule{0, math.MaxInt64}, 2, 1, 1, math.MaxInt64},
		{"HugeNegativeGap", backoff.Schedule{math.MaxInt64, math.MinInt64}, 2, 1, 1, 0},
		{"OverflowingGap", backoff.Schedule{math.MinInt64, math.MaxInt64}, 2, 1, 1, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := backoff.Jitter(tt.s, tt.n, tt.frac, tt.r)
			if got != tt.want {
				t.Fatalf("Jitter(%v, %d, %v, %v) = %v, want %v", tt.s, tt.n, tt.frac, tt.r, got, tt.want)
			}
			if got < 0 {
				t.Fatalf("Jitter(%v, %d, %v, %v) = %v, negative", tt.s, tt.n, tt.frac, tt.r, got)
			}
		})
	}
}

func TestParseJitter(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		wantErr bool
	}{
		{"10%", 0.1, false},
		{"0.1", 0.1, false},
		{" 25 % ", 0.25, false},
		{"0", 0, false},
		{"0%", 0, false},
		{"1", 1, false},
		{"100%", 1, false},
		{".5", 0.5, false},
		{"", 0, true},
		{"%", 0, true},
		{"abc", 0, true},
		{"10%%", 0, true},
		{"-1%", 0, true},
		{"-0.1", 0, true},
		{"101%", 0, true},
		{"1.5", 0, true},
		{"NaN", 0, true},
		{"NaN%", 0, true},
		{"Inf", 0, true},
		{"1e400", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := backoff.ParseJitter(tt.in)
			if tt.wantErr {
				if !errors.Is(err, backoff.ErrInvalid) {
					t.Fatalf("ParseJitter(%q) = %v, %v; want an error wrapping ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil || math.Abs(got-tt.want) > 1e-12 {
				t.Fatalf("ParseJitter(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func ExamplePreset() {
	s, _ := backoff.Preset("alipay")
	fmt.Println(s)
	// Output:
	// 0s,4m0s,14m0s,24m0s,1h24m0s,3h24m0s,9h24m0s,24h24m0s
}

func ExampleParse_preset() {
	s, err := backoff.Parse("Standard-Webhooks")
	fmt.Println(s, err)
	_, err = backoff.Parse("alipy")
	fmt.Println(err)
	// Output:
	// 0s,5s,5m5s,35m5s,2h35m5s,7h35m5s,17h35m5s,27h35m5s <nil>
	// invalid schedule: "alipy": not seconds or a Go duration, and not a preset (alipay, default, standard-webhooks, wechat)
}

func ExampleJitter() {
	s, _ := backoff.Parse("0,10s,30s")
	frac, _ := backoff.ParseJitter("10%")
	r := 0.5 // from the caller's random source, in [0,1)
	for n := 1; n <= s.Attempts(); n++ {
		fmt.Println(n, s[n-1]+backoff.Jitter(s, n, frac, r))
	}
	// Output:
	// 1 0s
	// 2 10.5s
	// 3 31s
}
