package notifier

import (
	"reflect"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
)

func TestStatusOf(t *testing.T) {
	stamp := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	pending := &Notice{
		ID: "n_1", URL: "https://p.example/h", Stamp: stamp,
		Schedule: backoff.Schedule{0, 10 * time.Second, 30 * time.Second},
	}
	attempt := func(n int, o Outcome) Attempt {
		return Attempt{NoticeID: "n_1", Stamp: stamp, N: n, Due: stamp, Start: stamp, Status: 500, Outcome: o}
	}
	ptr := func(t time.Time) *time.Time { return &t }

	tests := []struct {
		name     string
		pending  *Notice
		n        int
		inFlight bool
		attempts []Attempt
		wantOK   bool
		want     Status // Last is checked by its N and Outcome only
	}{
		{
			name:    "PendingBeforeAnyAttempt",
			pending: pending, n: 1,
			wantOK: true,
			want:   Status{ID: "n_1", State: StatePending, MaxAttempts: 3, NextAttempt: 1, NextDue: ptr(stamp), Stamp: ptr(stamp)},
		},
		{
			name:    "PendingAfterARetry",
			pending: pending, n: 2, inFlight: true,
			attempts: []Attempt{attempt(1, Retry)},
			wantOK:   true,
			want: Status{ID: "n_1", State: StatePending, Attempts: 1, MaxAttempts: 3, NextAttempt: 2,
				NextDue: ptr(stamp.Add(10 * time.Second)), InFlight: true, Stamp: ptr(stamp),
				Last: &AttemptJSON{N: 1, Outcome: Retry}},
		},
		{
			name:     "DeliveredWhenTheLastOutcomeIsDelivered",
			attempts: []Attempt{attempt(1, Retry), attempt(2, Delivered)},
			wantOK:   true,
			want:     Status{ID: "n_1", State: StateDelivered, Attempts: 2, Stamp: ptr(stamp), Last: &AttemptJSON{N: 2, Outcome: Delivered}},
		},
		{
			name:     "GaveUpWhenTheLastOutcomeIsGaveUp",
			attempts: []Attempt{attempt(1, Retry), attempt(2, Retry), attempt(3, GaveUp)},
			wantOK:   true,
			want:     Status{ID: "n_1", State: StateGaveUp, Attempts: 3, Stamp: ptr(stamp), Last: &AttemptJSON{N: 3, Outcome: GaveUp}},
		},
		{
			name:     "DroppedWhenTheLastOutcomeIsError",
			attempts: []Attempt{attempt(1, Error)},
			wantOK:   true,
			want:     Status{ID: "n_1", State: StateDropped, Attempts: 1, Stamp: ptr(stamp), Last: &AttemptJSON{N: 1, Outcome: Error}},
		},
		{
			name:   "UnknownWhenNothingKnowsTheNotice",
			wantOK: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := StatusOf("n_1", tt.pending, tt.n, tt.inFlight, tt.attempts)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if (got.Last == nil) != (tt.want.Last == nil) {
				t.Fatalf("Last = %+v, want %+v", got.Last, tt.want.Last)
			}
			if got.Last != nil && (got.Last.N != tt.want.Last.N || got.Last.Outcome != tt.want.Last.Outcome) {
				t.Errorf("Last = #%d %s, want #%d %s", got.Last.N, got.Last.Outcome, tt.want.Last.N, tt.want.Last.Outcome)
			}
			got.Last, tt.want.Last = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("StatusOf =\n%s\nwant\n%s", statusString(got), statusString(tt.want))
			}
		})
	}
}

// TestStatusWithStoreState: Redis's word wins where the log lags or cannot
// know.
func TestStatusWithStoreState(t *testing.T) {
	tests := []struct {
		name   string
		logged State
		ok     bool
		redis  State
		want   State
		wantOK bool
	}{
		{"ParkedUnknownToTheLog", "", false, StateParked, StateParked, true},
		{"Cancelled", StatePending, true, StateCancelled, StateCancelled, true},
		{"DeliveryNotLoggedYet", StateGaveUp, true, StateDelivered, StateDelivered, true},
		{"PendingStaysPending", StatePending, true, StatePending, StatePending, true},
		{"NothingFromRedis", StateGaveUp, true, "", StateGaveUp, true},
		{"UnknownEverywhere", "", false, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Status{State: tt.logged}.WithStoreState(tt.redis, tt.ok)
			if got.State != tt.want || ok != tt.wantOK {
				t.Errorf("= %q, %v; want %q, %v", got.State, ok, tt.want, tt.wantOK)
			}
		})
	}
}
