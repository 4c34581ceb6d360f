package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
)

// walFrames is how many frames the WAL of the log at path holds, read with
// a PASSIVE checkpoint on a connection of the test's own (which may copy
// some of them, as the checkpointer's would).
func walFrames(t *testing.T, path string) int64 {
	t.Helper()
	db, err := openDB(path, "_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, frames, done int64
	if err := db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
		t.Fatal(err)
	}
	return frames
}

func TestSQLiteCheckpointsOffTheWriter(t *testing.T) {
	path := tempLog(t)
	s := startLog(t, path)
	if got, err := pragmaInt(s.w, "wal_autocheckpoint"); err != nil || got != 0 {
		t.Fatalf("writer's wal_autocheckpoint: got %d, %v; want 0 (no checkpoint in its commits)", got, err)
	}
	big := func(prefix string) []notifier.Attempt {
		var as []notifier.Attempt
		for i := range 3000 {
			a := attempt(fmt.Sprintf("%s-%d", prefix, i), 1, notifier.Retry)
			a.Response = strings.Repeat("r", 1000)
			as = append(as, a)
		}
		return as
	}
	before, err := fileSize(path)
	if err != nil {
		t.Fatal(err)
	}
	record(t, s, big("a")...)

	t.Run("TheCheckpointerCopiesTheWAL", func(t *testing.T) {
		waitFor(t, func() bool {
			size, err := fileSize(path)
			return err == nil && size > before+2<<20
		}, "the attempts copied into the database file")
	})
	t.Run("TheWALStartsOver", func(t *testing.T) {
		full := walFrames(t, path)
		// Once every frame is copied, the writer's next commit writes
		// from the WAL's beginning again.
		// A generous deadline: on a loaded machine the quiet moment the
		// WAL needs to start over (every frame copied, no reader left on
		// an old snapshot) can take long to come.
		waitForWithin(t, time.Minute, func() bool {
			record(t, s, attempt("small", 1, notifier.Retry))
			return walFrames(t, path) < full/10
		}, "a WAL of a few frames")
	})
	t.Run("EveryRowIsKept", func(t *testing.T) {
		record(t, s, big("b")...)
		var n int
		if err := s.r.QueryRow("SELECT count(*) FROM attempts").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 6000 {
			t.Errorf("got %d attempts, want at least 6000", n)
		}
	})
}
