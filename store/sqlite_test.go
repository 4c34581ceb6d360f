package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// startLog opens a writable log at path and runs its writer until the test
// ends; cleanup stops Run, checks it returned nil and closes the log.
func startLog(t testing.TB, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func tempLog(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "attempts.db")
}

// attempt returns attempt i of notice id with every field set, at the
// precision the log keeps.
func attempt(id string, i int, o notifier.Outcome) notifier.Attempt {
	stamp := time.UnixMilli(1_700_000_000_123)
	due := stamp.Add(time.Duration(i) * 10 * time.Second)
	return notifier.Attempt{
		NoticeID: id,
		Stamp:    stamp,
		N:        i,
		Due:      due,
		Start:    time.UnixMicro(due.UnixMicro() + 1234),
		Duration: 56789 * time.Microsecond,
		URL:      "https://partner.example/hook?redacted",
		Status:   500,
		Outcome:  o,
		Error:    fmt.Sprintf("status %d", 500+i),
		Response: `{"ok":false}`,
		Next:     due.Add(10 * time.Second),
	}
}

func record(t testing.TB, s *SQLite, as ...notifier.Attempt) {
	t.Helper()
	ctx := context.Background()
	for _, a := range as {
		if err := s.Record(ctx, a); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func assertAttempt(t *testing.T, got, want notifier.Attempt) {
	t.Helper()
	if got.NoticeID != want.NoticeID || got.N != want.N || got.URL != want.URL ||
		got.Status != want.Status || got.Outcome != want.Outcome ||
		got.Error != want.Error || got.Response != want.Response || got.Duration != want.Duration {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{
		{"Stamp", got.Stamp, want.Stamp},
		{"Due", got.Due, want.Due},
		{"Start", got.Start, want.Start},
		{"Next", got.Next, want.Next},
	} {
		if !tm.got.Equal(tm.want) || tm.got.IsZero() != tm.want.IsZero() {
			t.Errorf("%s %s: got %v, want %v", got.NoticeID, tm.name, tm.got, tm.want)
		}
	}
}

func assertSeqs(t *testing.T, as []notifier.Attempt, want ...int64) {
	t.Helper()
	got := make([]int64, len(as))
	for i, a := range as {
		got[i] = a.Seq
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("seqs: got %v, want %v", got, want)
	}
}

func TestSQLiteRoundTrip(t *testing.T) {
	s := startLog(t, tempLog(t))
	last := attempt("n1", 3, notifier.GaveUp)
	last.Next = time.Time{}
	last.Status = 0
	last.Error = "dial tcp: connection refused"
	last.Response = ""
	want := []notifier.Attempt{
		attempt("n1", 1, notifier.Retry),
		attempt("n1", 2, notifier.Retry),
		last,
	}
	record(t, s, want...)

	ctx := context.Background()
	for name, read := range map[string]func() ([]notifier.Attempt, error){
		"Last":           func() ([]notifier.Attempt, error) { return s.Last(ctx, notifier.AttemptFilter{}, 0) },
		"NoticeAttempts": func() ([]notifier.Attempt, error) { return s.NoticeAttempts(ctx, "n1") },
	} {
		t.Run(name+"ReturnsEveryFieldAsRecorded", func(t *testing.T) {
			got, err := read()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d attempts, want %d", len(got), len(want))
			}
			for i := range want {
				assertAttempt(t, got[i], want[i])
			}
			assertSeqs(t, got, 1, 2, 3)
		})
	}
	t.Run("ZeroNextStaysZero", func(t *testing.T) {
		got, err := s.Last(ctx, notifier.AttemptFilter{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].Next.IsZero() {
			t.Fatalf("got %+v, want one attempt with zero Next", got)
		}
	})
	t.Run("UnknownNoticeHasNoAttempts", func(t *testing.T) {
		got, err := s.NoticeAttempts(ctx, "nope")
		if err != nil || len(got) != 0 {
			t.Fatalf("got %v, %v; want no attempts, nil", got, err)
		}
	})
}

func TestSQLiteFilters(t *testing.T) {
	s := startLog(t, tempLog(t))
	record(t, s,
		attempt("a", 1, notifier.Retry),     // seq 1
		attempt("b", 1, notifier.Retry),     // seq 2
		attempt("a", 2, notifier.Delivered), // seq 3
		attempt("c", 1, notifier.GaveUp),    // seq 4
		attempt("b", 2, notifier.GaveUp),    // seq 5
	)
	tests := []struct {
		name string
		f    notifier.AttemptFilter
		n    int
		want []int64
	}{
		{"ZeroFilterSelectsAll", notifier.AttemptFilter{}, 0, []int64{1, 2, 3, 4, 5}},
		{"NoticeIDSelectsOneNotice", notifier.AttemptFilter{NoticeID: "b"}, 0, []int64{2, 5}},
		{"OutcomeSelectsOneOutcome", notifier.AttemptFilter{Outcome: notifier.GaveUp}, 0, []int64{4, 5}},
		{"DeliveredHasNoIndexEntriesButIsFound", notifier.AttemptFilter{Outcome: notifier.Delivered}, 0, []int64{3}},
		{"AfterSeqSkipsUpToAndIncludingIt", notifier.AttemptFilter{AfterSeq: 3}, 0, []int64{4, 5}},
		{"FiltersCombine", notifier.AttemptFilter{NoticeID: "a", Outcome: notifier.Retry}, 0, []int64{1}},
		{"NoMatchIsEmpty", notifier.AttemptFilter{NoticeID: "a", Outcome: notifier.GaveUp}, 0, nil},
		{"LastNGivesNewestNOldestFirst", notifier.AttemptFilter{}, 2, []int64{4, 5}},
		{"LastNAppliesAfterFilter", notifier.AttemptFilter{Outcome: notifier.Retry}, 1, []int64{2}},
		{"LastNAboveCountGivesAll", notifier.AttemptFilter{NoticeID: "a"}, 10, []int64{1, 3}},
		{"NegativeNGivesAll", notifier.AttemptFilter{NoticeID: "c"}, -1, []int64{4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Last(context.Background(), tt.f, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			assertSeqs(t, got, tt.want...)
		})
	}
}

// follow runs Follow on r in a goroutine and returns the attempts it reports,
// a cancel function, and the channel Follow's result arrives on.
func follow(t *testing.T, r *SQLite, f notifier.AttemptFilter) (<-chan notifier.Attempt, context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan notifier.Attempt, 100)
	errc := make(chan error, 1)
	go func() {
		errc <- r.Follow(ctx, f, 5*time.Millisecond, func(a notifier.Attempt) error {
			got <- a
			return nil
		})
	}()
	t.Cleanup(cancel)
	return got, cancel, errc
}

func receive(t *testing.T, got <-chan notifier.Attempt, n int) []notifier.Attempt {
	t.Helper()
	var as []notifier.Attempt
	timeout := time.After(5 * time.Second)
	for len(as) < n {
		select {
		case a := <-got:
			as = append(as, a)
		case <-timeout:
			t.Fatalf("got %d attempts within 5s, want %d", len(as), n)
		}
	}
	return as
}

func waitNil(t *testing.T, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Follow: got %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return within 5s of cancel")
	}
}

func TestSQLiteFollow(t *testing.T) {
	t.Run("DeliversExistingThenNewAttemptsInOrder", func(t *testing.T) {
		s := startLog(t, tempLog(t))
		record(t, s, attempt("old", 1, notifier.Retry))
		got, cancel, errc := follow(t, s, notifier.AttemptFilter{})
		assertSeqs(t, receive(t, got, 1), 1)
		for i := 1; i <= 20; i++ {
			if err := s.Record(context.Background(), attempt("new", i, notifier.Retry)); err != nil {
				t.Fatal(err)
			}
		}
		as := receive(t, got, 20)
		for i, a := range as {
			if a.Seq != int64(i+2) || a.NoticeID != "new" || a.N != i+1 {
				t.Fatalf("attempt %d: got seq %d %s #%d, want seq %d new #%d", i, a.Seq, a.NoticeID, a.N, i+2, i+1)
			}
		}
		cancel()
		waitNil(t, errc)
	})
	t.Run("AppliesFilterAndAfterSeq", func(t *testing.T) {
		s := startLog(t, tempLog(t))
		record(t, s, attempt("x", 1, notifier.Retry), attempt("y", 1, notifier.Retry), attempt("x", 2, notifier.Retry))
		got, cancel, errc := follow(t, s, notifier.AttemptFilter{NoticeID: "x", AfterSeq: 1})
		record(t, s, attempt("y", 2, notifier.Retry), attempt("x", 3, notifier.Delivered))
		assertSeqs(t, receive(t, got, 2), 3, 5)
		cancel()
		waitNil(t, errc)
		select {
		case a := <-got:
			t.Fatalf("got unexpected attempt %+v", a)
		default:
		}
	})
	t.Run("ReturnsTheCallbackError", func(t *testing.T) {
		s := startLog(t, tempLog(t))
		record(t, s, attempt("a", 1, notifier.Retry), attempt("a", 2, notifier.Retry))
		stop := errors.New("stop")
		calls := 0
		err := s.Follow(context.Background(), notifier.AttemptFilter{}, 5*time.Millisecond, func(notifier.Attempt) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("got %v after %d calls, want %v after 1", err, calls, stop)
		}
	})
	t.Run("ReadOnlyHandleSeesWritersRows", func(t *testing.T) {
		path := tempLog(t)
		w := startLog(t, path)
		record(t, w, attempt("a", 1, notifier.Retry))
		r, err := OpenSQLiteReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		got, cancel, errc := follow(t, r, notifier.AttemptFilter{})
		assertSeqs(t, receive(t, got, 1), 1)
		record(t, w, attempt("a", 2, notifier.Retry), attempt("a", 3, notifier.GaveUp))
		as := receive(t, got, 2)
		assertSeqs(t, as, 2, 3)
		if as[1].Outcome != notifier.GaveUp {
			t.Errorf("got outcome %q, want %q", as[1].Outcome, notifier.GaveUp)
		}
		cancel()
		waitNil(t, errc)
	})
}

func TestSQLiteRunFlushesOnCancel(t *testing.T) {
	const rows = 5000
	path := tempLog(t)
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Queued before Run starts and cancelled at once, so every row goes
	// through the final drain rather than the normal loop.
	for i := range rows {
		if err := s.Record(context.Background(), attempt("n", i, notifier.Retry)); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}

	t.Run("EveryQueuedAttemptIsWritten", func(t *testing.T) {
		var n int
		if err := s.r.QueryRow("SELECT count(*) FROM attempts").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != rows {
			t.Fatalf("got %d rows, want %d", n, rows)
		}
	})
	t.Run("RecordAfterRunReturnsErrLogClosed", func(t *testing.T) {
		if err := s.Record(context.Background(), attempt("late", 1, notifier.Retry)); !errors.Is(err, ErrLogClosed) {
			t.Fatalf("got %v, want %v", err, ErrLogClosed)
		}
	})
	t.Run("SyncAfterRunReturnsErrLogClosed", func(t *testing.T) {
		if err := s.Sync(context.Background()); !errors.Is(err, ErrLogClosed) {
			t.Fatalf("got %v, want %v", err, ErrLogClosed)
		}
	})
	t.Run("SecondRunFails", func(t *testing.T) {
		if err := s.Run(context.Background()); err == nil {
			t.Fatal("got nil, want an error")
		}
	})
}

func TestSQLiteRecordHonoursContext(t *testing.T) {
	// No Run: the queue fills and Record must give up when ctx ends.
	s, err := OpenSQLite(tempLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range queueSize {
		if err := s.Record(context.Background(), attempt("n", i, notifier.Retry)); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Record(ctx, attempt("n", queueSize, notifier.Retry)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Record on a full queue: got %v, want %v", err, context.Canceled)
	}
}

func TestSQLiteFileMode(t *testing.T) {
	path := tempLog(t)
	s := startLog(t, path)
	record(t, s, attempt("a", 1, notifier.Retry))
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: got mode %v, want %v", filepath.Base(p), got, os.FileMode(0o600))
		}
	}
}

func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd name?#%.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	record(t, s, attempt("a", 1, notifier.Retry))
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	t.Run("PathIsTakenLiterally", func(t *testing.T) {
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("KeepsRowsAndAppendsAfterThem", func(t *testing.T) {
		s := startLog(t, path)
		record(t, s, attempt("a", 2, notifier.Retry))
		got, err := s.Last(context.Background(), notifier.AttemptFilter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		assertSeqs(t, got, 1, 2)
	})
}

func TestSQLiteReadOnly(t *testing.T) {
	t.Run("MissingFileIsNotExist", func(t *testing.T) {
		_, err := OpenSQLiteReadOnly(filepath.Join(t.TempDir(), "missing.db"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v, want an error wrapping os.ErrNotExist", err)
		}
	})
	t.Run("FileWithoutSchemaIsRejected", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "empty.db")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSQLiteReadOnly(path); err == nil {
			t.Fatal("got nil, want an error")
		}
	})
	t.Run("ReadsAClosedLogAndRefusesWrites", func(t *testing.T) {
		path := tempLog(t)
		w, err := OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- w.Run(ctx) }()
		record(t, w, attempt("a", 1, notifier.Delivered))
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}

		r, err := OpenSQLiteReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		got, err := r.NoticeAttempts(context.Background(), "a")
		if err != nil {
			t.Fatal(err)
		}
		assertSeqs(t, got, 1)
		if err := r.Record(context.Background(), attempt("a", 2, notifier.Retry)); err == nil {
			t.Error("Record on a read-only log: got nil, want an error")
		}
	})
}

// endedAt is the last attempt n of notice id, ending it with outcome o at
// end under partner, with the notice to archive.
func endedAt(id string, n int, o notifier.Outcome, partner string, end time.Time) notifier.Attempt {
	a := attempt(id, n, o)
	a.Next = time.Time{}
	a.Partner = partner
	a.Start = end.Add(-a.Duration)
	a.Ended = &notifier.Notice{
		ID:       id,
		URL:      "https://partner.example/hook?token=secret",
		Body:     []byte(`{"id":"` + id + `"}` + "\n"),
		Header:   http.Header{"X-Shop": {"7"}, "X-Trace": {"a", "b"}},
		Schedule: backoff.Schedule{0, 200 * time.Millisecond, 400 * time.Millisecond},
		Stamp:    a.Stamp,
	}
	return a
}

// at is a time on the archive tests' clock: second s after a fixed instant,
// plus us microseconds.
func at(s, us int) time.Time {
	return time.UnixMicro(1_700_000_100_000_000 + int64(s)*1e6 + int64(us))
}

func assertEnded(t *testing.T, got notifier.EndedNotice, want notifier.Attempt) {
	t.Helper()
	g, w := got.Notice, want.Ended
	if g.ID != w.ID || g.URL != w.URL || !bytes.Equal(g.Body, w.Body) ||
		!reflect.DeepEqual(g.Header, w.Header) || !slices.Equal(g.Schedule, w.Schedule) || !g.Stamp.Equal(w.Stamp) {
		t.Errorf("notice: got %+v, want %+v", g, *w)
	}
	end := want.Start.Add(want.Duration)
	if got.Outcome != want.Outcome || !got.Ended.Equal(end) || got.Attempts != want.N || got.Partner != want.Partner {
		t.Errorf("end: got %s at %v after %d attempts for %q, want %s at %v after %d for %q",
			got.Outcome, got.Ended, got.Attempts, got.Partner, want.Outcome, end, want.N, want.Partner)
	}
}

// eachEnded returns the ids EachEnded visits, in order, and its error.
func eachEnded(t *testing.T, s *SQLite, f notifier.NoticeFilter) ([]string, error) {
	t.Helper()
	var ids []string
	err := s.EachEnded(context.Background(), f, func(e notifier.EndedNotice) error {
		ids = append(ids, e.Notice.ID)
		return nil
	})
	return ids, err
}

func TestSQLiteArchive(t *testing.T) {
	s := startLog(t, tempLog(t))
	retry := attempt("n1", 1, notifier.Retry)
	retry.Partner = "acme"
	delivered := endedAt("n1", 2, notifier.Delivered, "acme", at(5, 7))
	record(t, s, retry, delivered, attempt("pending", 1, notifier.Retry))
	ctx := context.Background()

	t.Run("EndedReturnsTheNoticeAndHowItEnded", func(t *testing.T) {
		got, err := s.Ended(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		assertEnded(t, got, delivered)
	})
	t.Run("NoticeThatDidNotEndIsNotFound", func(t *testing.T) {
		for _, id := range []string{"pending", "nope"} {
			if _, err := s.Ended(ctx, id); !errors.Is(err, notifier.ErrNotFound) {
				t.Errorf("Ended(%q): got %v, want an error wrapping %v", id, err, notifier.ErrNotFound)
			}
		}
	})
	t.Run("PartnerRoundTripsThroughLast", func(t *testing.T) {
		got, err := s.Last(ctx, notifier.AttemptFilter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var partners []string
		for _, a := range got {
			partners = append(partners, a.Partner)
		}
		if want := []string{"acme", "acme", ""}; !slices.Equal(partners, want) {
			t.Errorf("partners: got %q, want %q", partners, want)
		}
		assertAttempt(t, got[1], delivered)
	})
	t.Run("FilterPartnerSelectsOnePartner", func(t *testing.T) {
		got, err := s.Last(ctx, notifier.AttemptFilter{Partner: "acme"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		assertSeqs(t, got, 1, 2)
	})
	t.Run("OnlyEndingAttemptsAreArchived", func(t *testing.T) {
		n, err := s.CountEnded(ctx, notifier.NoticeFilter{})
		if err != nil || n != 1 {
			t.Fatalf("CountEnded: got %d, %v; want 1, nil", n, err)
		}
	})
}

func TestSQLiteEachEnded(t *testing.T) {
	s := startLog(t, tempLog(t))
	// Recorded out of end order: EachEnded orders by end, not by seq.
	record(t, s,
		endedAt("c", 3, notifier.GaveUp, "acme", at(3, 0)),
		endedAt("a", 1, notifier.Delivered, "acme", at(1, 0)),
		endedAt("d", 1, notifier.Error, "", at(4, 0)),
		endedAt("b", 2, notifier.Delivered, "globex", at(2, 0)),
		endedAt("e", 5, notifier.GaveUp, "globex", at(5, 0)),
	)
	tests := []struct {
		name string
		f    notifier.NoticeFilter
		want []string
	}{
		{"ZeroFilterSelectsAllOldestEndFirst", notifier.NoticeFilter{}, []string{"a", "b", "c", "d", "e"}},
		{"OutcomeSelectsOneOutcome", notifier.NoticeFilter{Outcome: notifier.GaveUp}, []string{"c", "e"}},
		{"PartnerSelectsOnePartner", notifier.NoticeFilter{Partner: "globex"}, []string{"b", "e"}},
		{"SinceIsInclusive", notifier.NoticeFilter{Since: at(3, 0)}, []string{"c", "d", "e"}},
		{"SinceBetweenMicrosecondsRoundsUp", notifier.NoticeFilter{Since: at(3, 0).Add(-time.Nanosecond)}, []string{"c", "d", "e"}},
		{"SinceJustAfterAnEndExcludesIt", notifier.NoticeFilter{Since: at(3, 0).Add(time.Nanosecond)}, []string{"d", "e"}},
		{"UntilIsExclusive", notifier.NoticeFilter{Until: at(3, 0)}, []string{"a", "b"}},
		{"UntilJustAfterAnEndIncludesIt", notifier.NoticeFilter{Until: at(3, 0).Add(time.Nanosecond)}, []string{"a", "b", "c"}},
		{"SinceAndUntilBoundAWindow", notifier.NoticeFilter{Since: at(2, 0), Until: at(4, 0)}, []string{"b", "c"}},
		{"FiltersCombine", notifier.NoticeFilter{Since: at(2, 0), Outcome: notifier.Delivered, Partner: "globex"}, []string{"b"}},
		{"NoMatchIsEmpty", notifier.NoticeFilter{Since: at(3, 0), Outcome: notifier.Delivered}, nil},
		{"UntilBeforeSinceIsEmpty", notifier.NoticeFilter{Since: at(4, 0), Until: at(2, 0)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := eachEnded(t, s, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("EachEnded: got %q, want %q", got, tt.want)
			}
			n, err := s.CountEnded(context.Background(), tt.f)
			if err != nil || n != len(tt.want) {
				t.Errorf("CountEnded: got %d, %v; want %d, nil", n, err, len(tt.want))
			}
		})
	}
	t.Run("ReturnsTheCallbackErrorAndStops", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := s.EachEnded(context.Background(), notifier.NoticeFilter{}, func(notifier.EndedNotice) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("got %v after %d calls, want %v after 1", err, calls, stop)
		}
	})
}

func TestSQLiteEachEndedPages(t *testing.T) {
	// More than two pages, all ending in the same microsecond but one,
	// so paging must break ties and not skip or repeat a notice.
	const total = 2*endedBatch + 7
	s := startLog(t, tempLog(t))
	as := make([]notifier.Attempt, total)
	for i := range as {
		as[i] = endedAt(fmt.Sprintf("n%04d", i), 1, notifier.Delivered, "", at(1, 0))
	}
	as[0] = endedAt("n0000", 1, notifier.Delivered, "", at(2, 0)) // the last to end
	record(t, s, as...)

	got, err := eachEnded(t, s, notifier.NoticeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != total {
		t.Fatalf("got %d notices, want %d", len(got), total)
	}
	seen := make(map[string]bool, total)
	for _, id := range got {
		if seen[id] {
			t.Fatalf("%s visited twice", id)
		}
		seen[id] = true
	}
	if got[total-1] != "n0000" {
		t.Errorf("last visited: got %s, want n0000 (the last to end)", got[total-1])
	}
}

func TestSQLiteArchiveLaterEndReplaces(t *testing.T) {
	s := startLog(t, tempLog(t))
	ctx := context.Background()
	first := endedAt("n1", 3, notifier.GaveUp, "acme", at(1, 0))
	record(t, s, first)
	// Retried by an operator with a new body, and delivered this time.
	second := endedAt("n1", 1, notifier.Delivered, "globex", at(9, 5))
	second.Ended.Body = []byte(`{"fixed":true}`)
	record(t, s, second)

	got, err := s.Ended(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	assertEnded(t, got, second)
	for _, f := range []notifier.NoticeFilter{{}, {Outcome: notifier.Delivered}} {
		if n, err := s.CountEnded(ctx, f); err != nil || n != 1 {
			t.Errorf("CountEnded(%+v): got %d, %v; want 1, nil", f, n, err)
		}
	}
	if n, err := s.CountEnded(ctx, notifier.NoticeFilter{Outcome: notifier.GaveUp}); err != nil || n != 0 {
		t.Errorf("CountEnded(gave-up): got %d, %v; want 0, nil", n, err)
	}
}

func TestSQLiteCorruptArchive(t *testing.T) {
	s := startLog(t, tempLog(t))
	ctx := context.Background()
	record(t, s,
		endedAt("a", 1, notifier.Delivered, "", at(1, 0)),
		endedAt("bad", 1, notifier.Delivered, "", at(2, 0)),
		endedAt("c", 1, notifier.Delivered, "", at(3, 0)),
	)
	if _, err := s.w.Exec("UPDATE notices SET payload = x'00' WHERE id = 'bad'"); err != nil {
		t.Fatal(err)
	}

	t.Run("EndedWrapsErrCorruptArchive", func(t *testing.T) {
		if _, err := s.Ended(ctx, "bad"); !errors.Is(err, notifier.ErrCorruptArchive) {
			t.Fatalf("got %v, want an error wrapping %v", err, notifier.ErrCorruptArchive)
		}
	})
	t.Run("EachEndedSkipsItThenReportsIt", func(t *testing.T) {
		got, err := eachEnded(t, s, notifier.NoticeFilter{})
		if !slices.Equal(got, []string{"a", "c"}) {
			t.Errorf("visited %q, want [a c]", got)
		}
		if !errors.Is(err, notifier.ErrCorruptArchive) {
			t.Errorf("got %v, want an error wrapping %v", err, notifier.ErrCorruptArchive)
		}
	})
	t.Run("OtherNoticesStillRead", func(t *testing.T) {
		if _, err := s.Ended(ctx, "c"); err != nil {
			t.Fatal(err)
		}
	})
}

// version1Log creates a log at schema version 1 holding one attempt, as a
// binary from before the archive left it.
func version1Log(t *testing.T) string {
	t.Helper()
	path := tempLog(t)
	db, err := openDB(path, "_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	body, err := migrations.ReadFile("migrations/0001_attempts.sql")
	if err != nil {
		t.Fatal(err)
	}
	if err := applyMigration(db, 1, string(body)); err != nil {
		t.Fatal(err)
	}
	a := attempt("old", 1, notifier.Retry)
	_, err = db.Exec(`INSERT INTO attempts
		(notice_id, stamp_ms, n, due_ms, start_us, duration_us, url, status, outcome, error, response, next_due_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.NoticeID, a.Stamp.UnixMilli(), a.N, a.Due.UnixMilli(), a.Start.UnixMicro(), a.Duration.Microseconds(),
		a.URL, a.Status, string(a.Outcome), a.Error, a.Response, a.Next.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func userVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSQLiteVersion1(t *testing.T) {
	ctx := context.Background()
	old := attempt("old", 1, notifier.Retry)

	t.Run("ReadOnlyReadsItWithoutPartnersOrArchive", func(t *testing.T) {
		r, err := OpenSQLiteReadOnly(version1Log(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		got, err := r.Last(ctx, notifier.AttemptFilter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		assertSeqs(t, got, 1)
		assertAttempt(t, got[0], old)
		if got, err := r.Last(ctx, notifier.AttemptFilter{Partner: "acme"}, 0); err != nil || len(got) != 0 {
			t.Errorf("Last(partner acme): got %d attempts, %v; want none, nil", len(got), err)
		}
		if _, err := r.Ended(ctx, "old"); !errors.Is(err, notifier.ErrNotFound) {
			t.Errorf("Ended: got %v, want an error wrapping %v", err, notifier.ErrNotFound)
		}
		if ids, err := eachEnded(t, r, notifier.NoticeFilter{}); err != nil || len(ids) != 0 {
			t.Errorf("EachEnded: got %q, %v; want none, nil", ids, err)
		}
		if n, err := r.CountEnded(ctx, notifier.NoticeFilter{}); err != nil || n != 0 {
			t.Errorf("CountEnded: got %d, %v; want 0, nil", n, err)
		}
	})
	t.Run("OpenUpgradesItAndKeepsItsRows", func(t *testing.T) {
		s := startLog(t, version1Log(t))
		names, err := fs.Glob(migrations, "migrations/*.sql")
		if err != nil {
			t.Fatal(err)
		}
		if v := userVersion(t, s.r); v != len(names) {
			t.Fatalf("user_version: got %d, want %d", v, len(names))
		}
		end := endedAt("new", 2, notifier.Delivered, "acme", at(1, 0))
		record(t, s, end)
		got, err := s.Last(ctx, notifier.AttemptFilter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		assertSeqs(t, got, 1, 2)
		assertAttempt(t, got[0], old)
		if got[0].Partner != "" || got[1].Partner != "acme" {
			t.Errorf("partners: got %q and %q, want \"\" and acme", got[0].Partner, got[1].Partner)
		}
		e, err := s.Ended(ctx, "new")
		if err != nil {
			t.Fatal(err)
		}
		assertEnded(t, e, end)
	})
}

func BenchmarkRecord(b *testing.B) {
	s := startLog(b, tempLog(b))
	ctx := context.Background()
	a := attempt("bench", 1, notifier.Retry)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Record(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
	// Counted in the time: a row is recorded when it is committed.
	if err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
