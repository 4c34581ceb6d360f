package store

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecordDelivered is the writer's share of the real path: every
// notice is delivered at its first attempt, so each row is an attempt and an
// archived notice (200-byte body, as make bench sends). Ids come in order,
// as make bench's do, or in no order (each lands on another page of the
// id indexes). cpu-us/row is the whole process's CPU per row, the writer's
// goroutine and SQLite included.
func BenchmarkRecordDelivered(b *testing.B) {
	b.Run("InOrder", func(b *testing.B) {
		benchRecordDelivered(b, func(i int) string { return fmt.Sprintf("tp1-%08d", i) }, 0)
	})
	b.Run("NoOrder", func(b *testing.B) {
		benchRecordDelivered(b, func(i int) string { return fmt.Sprintf("bench-%016x", uint64(i)*0x9E3779B97F4A7C15) }, 0)
	})
	// Commits of 8 attempts each, as a writer that commits whatever has
	// queued makes at a few thousand attempts a second.
	b.Run("InOrderBatchesOf8", func(b *testing.B) {
		benchRecordDelivered(b, func(i int) string { return fmt.Sprintf("tp1-%08d", i) }, 8)
	})
}

// benchRecordDelivered records b.N attempts named name(i), with a Sync
// after every sync of them (0: only at the end).
func benchRecordDelivered(b *testing.B, name func(int) string, sync int) {
	path := tempLog(b)
	s := startLog(b, path)
	ctx := context.Background()
	for _, x := range strings.Split(os.Getenv("BENCH_SQL"), ";") {
		if x != "" {
			if _, err := s.w.Exec(x); err != nil {
				b.Fatal(err)
			}
		}
	}
	body := []byte(`{"order":1,"pad":"` + strings.Repeat("x", 178) + `"}`)
	stamp := time.UnixMilli(1_790_000_000_000)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := 0; i < b.N; i++ {
		id := name(i)
		start := stamp.Add(time.Duration(i) * time.Microsecond)
		a := notifier.Attempt{
			NoticeID: id, Stamp: stamp, N: 1, Due: stamp,
			Start: start, Duration: 800 * time.Microsecond,
			URL: "http://127.0.0.1:8080/hook", Status: 200,
			Outcome: notifier.Delivered, Response: "ok",
			Ended: &notifier.Notice{
				ID: id, URL: "http://127.0.0.1:8080/hook", Body: body,
				Header:   http.Header{"Content-Type": {"application/json"}},
				Schedule: backoff.Schedule{0, 10 * time.Second}, Stamp: stamp,
			},
		}
		if err := s.Record(ctx, a); err != nil {
			b.Fatal(err)
		}
		if sync > 0 && (i+1)%sync == 0 {
			if err := s.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/row")
	// The WAL's size at the end: checkpoints kept up if it stays small.
	wal, err := fileSize(path + "-wal")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(wal)/(1<<20), "wal-MiB")
}
