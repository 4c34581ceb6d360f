package notifier

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		v    string
		cap  time.Duration
		want time.Duration
	}{
		{"", time.Hour, 0},
		{"120", time.Hour, 2 * time.Minute},
		{"0", time.Hour, 0},
		{"-5", time.Hour, 0},
		{"999999999999999999999", time.Hour, 0}, // unreadable
		{"86400", time.Hour, time.Hour},         // capped
		{"86400", 0, time.Hour},                 // default cap
		{now.Add(90 * time.Second).Format(http.TimeFormat), time.Hour, 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), time.Hour, 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), time.Hour, time.Hour},
		{"soon", time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(tt.v, func(t *testing.T) {
			if got := retryAfter(tt.v, now, tt.cap); got != tt.want {
				t.Fatalf("retryAfter(%q, cap %v) = %v, want %v", tt.v, tt.cap, got, tt.want)
			}
		})
	}
}
