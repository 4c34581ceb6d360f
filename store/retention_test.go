package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
)

// copyFixture copies testdata/name to a new file in a temporary directory,
// so a test may migrate it.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "attempts.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lockedBuffer is a log destination a test reads while the writer logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runLog runs s's writer until the test ends.
func runLog(t *testing.T, s *SQLite) {
	t.Helper()
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
}

// attempts-v2.db was written by the release before retention (schema
// version 2, auto_vacuum off) through OpenSQLite and Record: 100 notices,
// each with a retry and a delivery, so 200 attempts and 100 archived.
func TestSQLiteMigratesAReleaseFileToIncrementalVacuum(t *testing.T) {
	path := copyFixture(t, "attempts-v2.db")
	ctx := context.Background()
	var logs lockedBuffer
	s, err := OpenSQLiteWith(path, SQLiteOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runLog(t, s)
	if got, err := pragmaInt(s.r, "auto_vacuum"); err != nil || got != 2 {
		t.Errorf("auto_vacuum: got %d, %v; want 2 (incremental)", got, err)
	}
	if !strings.Contains(logs.String(), "switching to incremental auto-vacuum") {
		t.Errorf("the VACUUM was not logged: %q", logs.String())
	}
	got, err := s.Last(ctx, notifier.AttemptFilter{}, 0)
	if err != nil || len(got) != 200 {
		t.Fatalf("attempts after migration: got %d, %v; want 200", len(got), err)
	}
	if n, err := s.CountEnded(ctx, notifier.NoticeFilter{}); err != nil || n != 100 {
		t.Errorf("archived notices: got %d, %v; want 100", n, err)
	}
	want := endedAt(got[1].NoticeID, 2, notifier.Delivered, "acme", at(0, 0))
	e, err := s.Ended(ctx, got[1].NoticeID)
	if err != nil {
		t.Fatal(err)
	}
	assertEnded(t, e, want)
	record(t, s, attempt("after", 1, notifier.Retry))

	t.Run("ReopeningDoesNotVacuumAgain", func(t *testing.T) {
		s.Close()
		var again lockedBuffer
		s2, err := OpenSQLiteWith(path, SQLiteOptions{Logger: slog.New(slog.NewTextHandler(&again, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if strings.Contains(again.String(), "VACUUM") {
			t.Errorf("reopening logged a VACUUM: %q", again.String())
		}
		if got, err := s2.Last(ctx, notifier.AttemptFilter{}, 0); err != nil || len(got) != 201 {
			t.Errorf("attempts after reopening: got %d, %v; want 201", len(got), err)
		}
	})
}

func TestSQLiteNewFileIsIncremental(t *testing.T) {
	var logs lockedBuffer
	s, err := OpenSQLiteWith(tempLog(t), SQLiteOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := pragmaInt(s.r, "auto_vacuum"); err != nil || got != 2 {
		t.Errorf("auto_vacuum: got %d, %v; want 2 (incremental)", got, err)
	}
	if strings.Contains(logs.String(), "VACUUM") {
		t.Errorf("a new file needed no VACUUM, but one was logged: %q", logs.String())
	}
}

// clock is a settable time for retention tests.
type clock struct{ ns atomic.Int64 }

func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time  { return time.Unix(0, c.ns.Load()) }

func TestSQLiteRetention(t *testing.T) {
	ctx := context.Background()
	var c clock
	c.set(at(-7200, 0)) // nothing is past retention yet
	path := tempLog(t)
	s, err := OpenSQLiteWith(path, SQLiteOptions{Retain: time.Hour, Now: c.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runLog(t, s)

	// Old rows, two hours before "now", and young ones, a minute before.
	var old, young []notifier.Attempt
	for i := range 3000 {
		a := attempt(fmt.Sprintf("old-%d", i), 1, notifier.Retry)
		a.Start = at(-7200, i)
		a.Response = strings.Repeat("r", 1000) // so the rows fill pages worth freeing
		if i%10 == 0 {
			a = endedAt(a.NoticeID, 1, notifier.GaveUp, "", at(-7200, i))
		}
		old = append(old, a)
	}
	for i := range 5 {
		a := endedAt(fmt.Sprintf("young-%d", i), 1, notifier.Delivered, "", at(-60, i))
		young = append(young, a)
	}
	record(t, s, append(old, young...)...)
	checkpointAll(t, s)
	full, err := fileSize(path)
	if err != nil {
		t.Fatal(err)
	}
	c.set(at(0, 0)) // two hours on: the old rows are past retention

	t.Run("RowsPastRetentionDisappear", func(t *testing.T) {
		waitFor(t, func() bool {
			n, err := s.CountEnded(ctx, notifier.NoticeFilter{})
			as, err2 := s.Last(ctx, notifier.AttemptFilter{}, 0)
			return err == nil && err2 == nil && n == len(young) && len(as) == len(young)
		}, "old attempts and archived notices deleted")
		as, err := s.Last(ctx, notifier.AttemptFilter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range as {
			if a.NoticeID != young[i].NoticeID {
				t.Errorf("attempt %d left: %s, want %s", i, a.NoticeID, young[i].NoticeID)
			}
		}
		if _, err := s.Ended(ctx, "young-0"); err != nil {
			t.Errorf("a young archived notice: %v", err)
		}
	})
	t.Run("FreedPagesGoBackToTheFileSystem", func(t *testing.T) {
		waitFor(t, func() bool {
			free, err := pragmaInt(s.r, "freelist_count")
			return err == nil && free <= freeSlack
		}, "free pages handed back")
		// The main file shrinks at the next checkpoint.
		checkpointAll(t, s)
		if got, _ := fileSize(path); got > full/2 {
			t.Errorf("file after retention: %d bytes, want under half of %d", got, full)
		}
	})
	t.Run("YoungRowsGoOnceTheyAge", func(t *testing.T) {
		c.set(at(3600, 0))
		waitFor(t, func() bool {
			n, err := s.CountEnded(ctx, notifier.NoticeFilter{})
			as, err2 := s.Last(ctx, notifier.AttemptFilter{}, 0)
			return err == nil && err2 == nil && n == 0 && len(as) == 0
		}, "every row deleted")
	})
}

func TestSQLiteZeroRetainKeepsEverything(t *testing.T) {
	s := startLog(t, tempLog(t))
	a := attempt("ancient", 1, notifier.Retry)
	a.Start = time.Unix(0, 0)
	record(t, s, a)
	if s.pruner != nil {
		t.Fatal("OpenSQLite without a retention prunes")
	}
	if got, err := s.Last(context.Background(), notifier.AttemptFilter{}, 0); err != nil || len(got) != 1 {
		t.Errorf("got %d attempts, %v; want 1", len(got), err)
	}
}

// checkpointAll copies the whole WAL into the database file. The
// checkpointer may be running one at the same moment, and then this one
// reports that it was blocked, so it is run until it was not.
func checkpointAll(t *testing.T, s *SQLite) {
	t.Helper()
	waitFor(t, func() bool {
		var busy, frames, done int64
		if err := s.w.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done); err != nil {
			t.Fatal(err)
		}
		return busy == 0
	}, "a checkpoint of the whole WAL")
}

// waitFor polls cond every 10 ms for up to 20 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	waitForWithin(t, 20*time.Second, cond, what)
}

// waitForWithin is waitFor with a deadline of d.
func waitForWithin(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
