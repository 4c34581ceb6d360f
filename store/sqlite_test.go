package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

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
		"Last":           func() ([]notifier.Attempt, error) { return s.Last(ctx, Filter{}, 0) },
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
		got, err := s.Last(ctx, Filter{}, 1)
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
		f    Filter
		n    int
		want []int64
	}{
		{"ZeroFilterSelectsAll", Filter{}, 0, []int64{1, 2, 3, 4, 5}},
		{"NoticeIDSelectsOneNotice", Filter{NoticeID: "b"}, 0, []int64{2, 5}},
		{"OutcomeSelectsOneOutcome", Filter{Outcome: notifier.GaveUp}, 0, []int64{4, 5}},
		{"AfterSeqSkipsUpToAndIncludingIt", Filter{AfterSeq: 3}, 0, []int64{4, 5}},
		{"FiltersCombine", Filter{NoticeID: "a", Outcome: notifier.Retry}, 0, []int64{1}},
		{"NoMatchIsEmpty", Filter{NoticeID: "a", Outcome: notifier.GaveUp}, 0, nil},
		{"LastNGivesNewestNOldestFirst", Filter{}, 2, []int64{4, 5}},
		{"LastNAppliesAfterFilter", Filter{Outcome: notifier.Retry}, 1, []int64{2}},
		{"LastNAboveCountGivesAll", Filter{NoticeID: "a"}, 10, []int64{1, 3}},
		{"NegativeNGivesAll", Filter{NoticeID: "c"}, -1, []int64{4}},
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
func follow(t *testing.T, r *SQLite, f Filter) (<-chan notifier.Attempt, context.CancelFunc, <-chan error) {
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
		got, cancel, errc := follow(t, s, Filter{})
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
		got, cancel, errc := follow(t, s, Filter{NoticeID: "x", AfterSeq: 1})
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
		err := s.Follow(context.Background(), Filter{}, 5*time.Millisecond, func(notifier.Attempt) error {
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
		got, cancel, errc := follow(t, r, Filter{})
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
		got, err := s.Last(context.Background(), Filter{}, 0)
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
