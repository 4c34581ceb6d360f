package notifier_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// fakeNotices is a Notices in memory; only State and PendingHeader answer.
type fakeNotices struct {
	notifier.Notices
	pending map[string]notifier.Pending
	states  map[string]notifier.State
}

func (f fakeNotices) PendingHeader(_ context.Context, id string) (notifier.Pending, error) {
	if p, ok := f.pending[id]; ok {
		return p, nil
	}
	return notifier.Pending{}, notifier.ErrNotFound
}

func (f fakeNotices) State(_ context.Context, id string) (notifier.State, error) {
	if st, ok := f.states[id]; ok {
		return st, nil
	}
	return "", notifier.ErrNotFound
}

// fakeHistory is a History in memory; only NoticeAttempts answers.
type fakeHistory struct {
	notifier.History
	attempts map[string][]notifier.Attempt
}

func (f fakeHistory) NoticeAttempts(_ context.Context, id string) ([]notifier.Attempt, error) {
	return f.attempts[id], nil
}

// TestNoticeStatus: the pending send's attempts only, Redis's word where
// the log cannot know, and ErrNotFound when neither knows the notice.
func TestNoticeStatus(t *testing.T) {
	ctx := context.Background()
	old := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	stamp := old.Add(time.Hour)
	due := stamp.Add(15 * time.Second) // armed later than its slot
	q := fakeNotices{
		pending: map[string]notifier.Pending{"p": {Notice: notifier.Notice{ID: "p", Stamp: stamp,
			Schedule: backoff.Schedule{0, 10 * time.Second}}, N: 2, Due: due}},
		states: map[string]notifier.State{"p": notifier.StatePending, "c": notifier.StateCancelled, "k": notifier.StateParked},
	}
	since := stamp.Add(time.Minute)
	q.pending["k"] = notifier.Pending{Notice: notifier.Notice{ID: "k", Stamp: stamp, Partner: "shop",
		Schedule: backoff.Schedule{0, 10 * time.Second}}, N: 1, Due: stamp,
		Parked: &notifier.Parked{Partner: "shop", Reason: "paused by an operator", Since: since}}
	log := fakeHistory{attempts: map[string][]notifier.Attempt{
		"p": {{NoticeID: "p", Stamp: old, N: 1, Outcome: notifier.GaveUp}, {NoticeID: "p", Stamp: stamp, N: 1, Outcome: notifier.Retry}},
		"c": {{NoticeID: "c", Stamp: old, N: 1, Outcome: notifier.Retry}},
	}}

	t.Run("PendingShowsItsCurrentSend", func(t *testing.T) {
		st, as, err := notifier.NoticeStatus(ctx, q, log, "p")
		if err != nil || st.State != notifier.StatePending || len(as) != 1 || st.Attempts != 1 || st.NextDue == nil || !st.NextDue.Equal(due) {
			t.Fatalf("got %+v, %d attempts, %v; want pending, 1 attempt, next due %v", st, len(as), err, due)
		}
	})
	t.Run("ParkedSaysWhy", func(t *testing.T) {
		st, _, err := notifier.NoticeStatus(ctx, q, nil, "k")
		if err != nil || st.State != notifier.StateParked || st.Stamp == nil || !st.Stamp.Equal(stamp) || st.NextDue != nil ||
			st.Parked == nil || st.Parked.Partner != "shop" {
			t.Fatalf("got %+v, %v; want parked, stamped, no due time, waiting for shop", st, err)
		}
		out := st.Format(since.Add(130 * time.Second))
		for _, want := range []string{"state:    parked\n", "stamp:    2026-03-01T11:00:00.000Z\n",
			"parked:   #1 waits until partner shop resumes (paused at 2026-03-01T11:01:00.000Z, 2m10s ago; reason: paused by an operator)\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("Format =\n%s\nwant it to contain %q", out, want)
			}
		}
		if strings.Contains(out, "overdue") || strings.Contains(out, "next:") {
			t.Errorf("Format =\n%s\na parked notice is neither due nor overdue", out)
		}
	})
	t.Run("StoreStateWins", func(t *testing.T) {
		if st, _, err := notifier.NoticeStatus(ctx, q, log, "c"); err != nil || st.State != notifier.StateCancelled {
			t.Fatalf("got %+v, %v; want cancelled", st, err)
		}
	})
	t.Run("NoLogOnThisHost", func(t *testing.T) {
		if st, as, err := notifier.NoticeStatus(ctx, q, nil, "p"); err != nil || st.State != notifier.StatePending || len(as) != 0 {
			t.Fatalf("got %+v, %v, %v; want pending without attempts", st, as, err)
		}
	})
	t.Run("UnknownIsNotFound", func(t *testing.T) {
		if _, _, err := notifier.NoticeStatus(ctx, q, log, "x"); !errors.Is(err, notifier.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
}
