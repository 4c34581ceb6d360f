package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
)

// okPartner answers every POST with 200 at once.
func okPartner(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// enqueueBatch enqueues n notices with ids prefix-0 … prefix-(n-1) and
// bodies of size bytes through `notifier enqueue --file -`.
func enqueueBatch(t *testing.T, redisURL, url, prefix string, n, size int) {
	t.Helper()
	var lines strings.Builder
	body := strings.Repeat("x", size)
	for i := range n {
		fmt.Fprintf(&lines, `{"id":"%s-%d","url":"%s","body":"%s","schedule":"0"}`+"\n", prefix, i, url, body)
	}
	if code, _, errOut := runCLI(t, lines.String(), "enqueue", "--redis", redisURL, "--file", "-"); code != 0 {
		t.Fatalf("enqueue --file: exit %d: %s", code, errOut)
	}
}

// logCounts reads the attempts and archived notices in the log at db, as
// another process would.
func logCounts(t *testing.T, db string) (attempts []notifier.Attempt, archived int) {
	t.Helper()
	log, err := store.OpenSQLiteReadOnly(db)
	if err != nil {
		return nil, -1
	}
	defer log.Close()
	ctx := context.Background()
	as, err := log.Last(ctx, notifier.AttemptFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := log.CountEnded(ctx, notifier.NoticeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return as, n
}

// TestRetentionThroughServe runs serve with --retain 2 (seconds): attempts
// and archived notices older than that disappear, none earlier, and under a
// steady load the file stops growing once the first window has passed.
func TestRetentionThroughServe(t *testing.T) {
	const retain = 2 * time.Second
	srv := redistest.Start(t)
	rdb := srv.Client()
	db := filepath.Join(t.TempDir(), "attempts.db")
	partnerURL := okPartner(t).URL + "/hook"
	startServe(t, rdb, "--redis", srv.URL(), "--db", db, "--allow-private", "--retain", "2")

	t.Run("RowsOlderThanTheWindowDisappear", func(t *testing.T) {
		enqueueBatch(t, srv.URL(), partnerURL, "first", 50, 100)
		deadline := time.Now().Add(30 * time.Second)
		var oldest time.Time
		for {
			as, archived := logCounts(t, db)
			if len(as) == 50 && archived == 50 {
				oldest = as[0].Start
				for _, a := range as {
					if a.Start.Before(oldest) {
						oldest = a.Start
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the 50 attempts and archived notices never all showed: %d, %d", len(as), archived)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for {
			as, archived := logCounts(t, db)
			if len(as) < 50 || archived < 50 {
				// Nothing goes before it is retain old.
				if age := time.Since(oldest); age < retain {
					t.Errorf("rows deleted when the oldest was %v old, under --retain %v", age, retain)
				}
			}
			if len(as) == 0 && archived == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rows past retention still there: %d attempts, %d archived", len(as), archived)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("TheFileStopsGrowing", func(t *testing.T) {
		// Batches every 100 ms for six windows; the file's size over the
		// last three windows must stay within what the first three
		// reached, bar the slack of free pages kept for reuse.
		var sizes []int64
		start := time.Now()
		for i := 0; time.Since(start) < 6*retain; i++ {
			enqueueBatch(t, srv.URL(), partnerURL, fmt.Sprintf("load%d", i), 40, 2000)
			fi, err := os.Stat(db)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, fi.Size())
			time.Sleep(100 * time.Millisecond)
		}
		half := len(sizes) / 2
		first, second := slices.Max(sizes[:half]), slices.Max(sizes[half:])
		t.Logf("attempt log: max %d bytes over the first three windows, %d over the last three (%d batches)", first, second, len(sizes))
		if limit := first + first/4 + 1<<20; second > limit {
			t.Errorf("attempt log kept growing: %d bytes in the last three windows, over %d (the first three's %d + 25%% + 1 MiB)",
				second, limit, first)
		}
		if as, archived := logCounts(t, db); len(as) >= len(sizes)*40 || archived >= len(sizes)*40 {
			t.Errorf("log holds %d attempts and %d archived of %d sent: retention deleted nothing", len(as), archived, len(sizes)*40)
		}
	})
}
