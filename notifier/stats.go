package notifier

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// StoreStats is what notifier stores and how big it has grown: every stored
// thing with a bound has its gauge here. `notifier stats` prints it, and
// serve's /metrics exports it (notifier_redis_*, notifier_attempt_log_*).
type StoreStats struct {
	// At is when the figures were read.
	At    time.Time  `json:"at"`
	Redis RedisStats `json:"redis"`
	// Log is nil where there is no attempt log (stats run on another host
	// than serve).
	Log *LogStats `json:"attempt_log,omitempty"`
}

// RedisStats are Redis's figures. On a Redis Cluster they are summed over
// the masters.
type RedisStats struct {
	// UsedMemory is Redis's used_memory, in bytes.
	UsedMemory int64 `json:"used_memory"`
	// Keys is the number of keys in the database (DBSIZE), notifier's and
	// any other application's.
	Keys int64 `json:"keys"`
	// Pending counts the attempts in the due index: one per pending notice
	// (claimed ones included), each with a trigger key and a payload.
	Pending int64 `json:"pending"`
	// Parked counts attempts parked while their partner is paused.
	Parked int64 `json:"parked"`
	// DeliveredRemembered counts the delivered ids remembered for the
	// dedup window, so that enqueue refuses them. Nil when the store
	// cannot count them without scanning the keyspace.
	DeliveredRemembered *int64 `json:"delivered_remembered"`
	// FleetStream is the length of the fleet stream (serve --fleet-log),
	// which serve caps at about --fleet-log-max entries.
	FleetStream int64 `json:"fleet_stream"`
}

// LogStats are the attempt log's figures.
type LogStats struct {
	// FileBytes and WALBytes are the sizes of the SQLite file and its
	// write-ahead log.
	FileBytes int64 `json:"file_bytes"`
	WALBytes  int64 `json:"wal_bytes"`
	// Attempts is about how many attempts the log holds (the span of its
	// row numbers: exact unless rows were deleted out of order).
	Attempts int64 `json:"attempts"`
	// OldestAttempt is when the oldest logged attempt started, and
	// OldestArchived when the oldest archived notice ended; zero when there
	// is none. Retention (serve --retain) keeps both within its window.
	OldestAttempt  time.Time `json:"oldest_attempt,omitzero"`
	OldestArchived time.Time `json:"oldest_archived,omitzero"`
	// RetentionSteps counts serve's retention steps by how long each held
	// the attempt log's writer (attempt logging waits behind a step):
	// RetentionSteps[i] took at most RetentionStepBounds[i], the last
	// counts the rest. RetentionStepsTotal is their total time. Both are
	// empty outside serve.
	RetentionSteps      []uint64      `json:"retention_steps,omitempty"`
	RetentionStepsTotal time.Duration `json:"retention_steps_total_ns,omitempty"`
}

// RetentionStepBounds are the upper bounds of LogStats.RetentionSteps; it
// has one bucket more, for the rest.
var RetentionStepBounds = [...]time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}

// RedisStatsReader reads RedisStats; store.Redis implements it. Each call
// is a few commands whose cost does not grow with the number of notices.
type RedisStatsReader interface {
	RedisStats(ctx context.Context) (RedisStats, error)
}

// LogStatsReader reads LogStats; store.SQLite implements it, with a few
// indexed queries and two stats of files.
type LogStatsReader interface {
	LogStats(ctx context.Context) (LogStats, error)
}

// ReadStats reads the stats of r and, if l is not nil, of l.
func ReadStats(ctx context.Context, r RedisStatsReader, l LogStatsReader, now time.Time) (StoreStats, error) {
	st := StoreStats{At: now}
	var err error
	if st.Redis, err = r.RedisStats(ctx); err != nil {
		return StoreStats{}, fmt.Errorf("redis stats: %w", err)
	}
	if l != nil {
		ls, err := l.LogStats(ctx)
		if err != nil {
			return StoreStats{}, fmt.Errorf("attempt log stats: %w", err)
		}
		st.Log = &ls
	}
	return st, nil
}

// Format renders st for people, one figure a line, ages measured at now.
func (st StoreStats) Format(now time.Time) string {
	var b strings.Builder
	r := st.Redis
	fmt.Fprintf(&b, "redis used_memory     %s\n", bytesText(r.UsedMemory))
	fmt.Fprintf(&b, "redis keys            %d\n", r.Keys)
	fmt.Fprintf(&b, "  pending             %d\n", r.Pending)
	fmt.Fprintf(&b, "  parked              %d\n", r.Parked)
	if r.DeliveredRemembered != nil {
		fmt.Fprintf(&b, "  delivered ids       %d\n", *r.DeliveredRemembered)
	} else {
		fmt.Fprintf(&b, "  delivered ids       not counted by this store\n")
	}
	fmt.Fprintf(&b, "  fleet stream        %d entries\n", r.FleetStream)
	if st.Log == nil {
		fmt.Fprintf(&b, "attempt log           none on this host\n")
		return b.String()
	}
	l := st.Log
	fmt.Fprintf(&b, "attempt log file      %s\n", bytesText(l.FileBytes))
	fmt.Fprintf(&b, "attempt log wal       %s\n", bytesText(l.WALBytes))
	fmt.Fprintf(&b, "attempts logged       about %d\n", l.Attempts)
	fmt.Fprintf(&b, "oldest attempt        %s\n", ageText(l.OldestAttempt, now))
	fmt.Fprintf(&b, "oldest archived       %s\n", ageText(l.OldestArchived, now))
	return b.String()
}

func ageText(t, now time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%s ago (%s)", now.Sub(t).Round(time.Second), t.UTC().Format(time.RFC3339))
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%d (%.1f GiB)", n, float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d (%.1f MiB)", n, float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d (%.1f KiB)", n, float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// DefaultStatsEvery is how often a StatsGatherer reads the stats.
const DefaultStatsEvery = 10 * time.Second

// StatsGatherer reads the stats periodically, so a scrape of /metrics
// reports the last figures instead of querying Redis and SQLite itself: the
// cost is a few cheap commands every Every, however often it is scraped.
type StatsGatherer struct {
	Redis RedisStatsReader
	Log   LogStatsReader // nil: no attempt log
	// Every is the period; 0 means DefaultStatsEvery.
	Every  time.Duration
	Logger *slog.Logger
	Now    func() time.Time

	last atomic.Pointer[StoreStats]
}

// Last returns the last stats read, and false before the first read.
func (g *StatsGatherer) Last() (StoreStats, bool) {
	if st := g.last.Load(); st != nil {
		return *st, true
	}
	return StoreStats{}, false
}

// Run reads the stats at once and then every Every, until ctx ends. A
// failed read is logged (once until a read succeeds again) and the last
// figures stay. It returns nil.
func (g *StatsGatherer) Run(ctx context.Context) error {
	every := g.Every
	if every <= 0 {
		every = DefaultStatsEvery
	}
	now, log := g.Now, g.Logger
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		rctx, cancel := context.WithTimeout(ctx, every)
		st, err := ReadStats(rctx, g.Redis, g.Log, now())
		cancel()
		switch {
		case err == nil:
			g.last.Store(&st)
			failing = false
		case ctx.Err() == nil && !failing:
			log.Warn("read stats", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
