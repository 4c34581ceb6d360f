package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/notifier/notifier/notifier"
)

// Retention: the writer (Run) deletes attempts and archived notices older
// than SQLiteOptions.Retain, a small batch at a time between batches of
// attempts, and hands the freed pages back to the file system. Each step is
// one short transaction on the one write connection, sized to take about
// pruneTarget, so attempt logging waits behind it for milliseconds; a queue
// of 8192 attempts absorbs that wait without slowing the workers. No commit
// of the writer runs a WAL checkpoint: the checkpointer does, on a connection
// of its own (checkpoint.go). The histogram in LogStats counts the whole
// step.
const (
	// pruneEvery is how often the writer looks for rows past retention
	// when the last look found none left.
	pruneEvery = time.Second
	// pruneTarget is what one step's deletes and vacuum should take.
	// Batches shrink when they take longer (large archived bodies free
	// many overflow pages) and grow back, up to the maxima, when they take
	// much less.
	pruneTarget = 2 * time.Millisecond
	// maxAttemptBatch and maxNoticeBatch bound the rows of one step; an
	// archived notice may hold a 1 MiB body, hence the smaller bound.
	maxAttemptBatch = 2000
	maxNoticeBatch  = 200
	// vacuumPages is the most pages one step returns to the file system,
	// and freeSlack the free pages kept for the rows still to come: a
	// steady log reuses them instead of shrinking and growing the file.
	vacuumPages = 256
	freeSlack   = 256
	// walLimit is the size SQLite truncates the WAL file to after a
	// checkpoint; without it the WAL keeps its largest size forever.
	walLimit = 64 << 20
)

// SQLiteOptions configure OpenSQLiteWith.
type SQLiteOptions struct {
	// Retain is how long attempts and archived notices are kept, measured
	// from an attempt's start and a notice's end; 0 keeps everything.
	Retain time.Duration
	// Logger receives the one-off migration of an existing file to
	// incremental auto-vacuum, and retention's errors; nil discards.
	Logger *slog.Logger
	// Now is the clock retention measures age with; nil is time.Now.
	Now func() time.Time
}

// pruner is the writer's retention state: only Run's goroutine uses it.
type pruner struct {
	retain         time.Duration
	now            func() time.Time
	attempts, ends int // current batch sizes, adapted to pruneTarget
	// steps counts steps by duration (notifier.RetentionStepBounds; the
	// last counts the rest), stepsNS is their total: how long attempts
	// waited behind retention. Stats reads them.
	steps   [len(notifier.RetentionStepBounds) + 1]atomic.Uint64
	stepsNS atomic.Int64
}

func newPruner(o SQLiteOptions) *pruner {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &pruner{retain: o.Retain, now: now, attempts: 500, ends: 50}
}

// setAutoVacuum makes the file at db use incremental auto-vacuum, so pages
// freed by retention can be handed back with PRAGMA incremental_vacuum. A new
// file takes the setting at once; an existing one written by an earlier
// release needs one VACUUM, which rewrites the file (and needs as much free
// disk again), so it is logged with its duration.
func setAutoVacuum(db *sql.DB, path string, log *slog.Logger) error {
	const incremental = 2
	mode, err := pragmaInt(db, "auto_vacuum")
	if err != nil || mode == incremental {
		return err
	}
	if _, err := db.Exec("PRAGMA auto_vacuum = INCREMENTAL"); err != nil {
		return fmt.Errorf("set auto_vacuum: %w", err)
	}
	// The setting takes at once only on a file without a header yet, and
	// WAL mode has written one; otherwise it waits for a VACUUM. On a new
	// file, without tables, that VACUUM costs nothing worth a log line.
	if mode, err = pragmaInt(db, "auto_vacuum"); err != nil || mode == incremental {
		return err
	}
	var tables int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	if tables == 0 {
		log = slog.New(slog.DiscardHandler)
	}
	size, _ := fileSize(path)
	log.Info("attempt log: switching to incremental auto-vacuum (one VACUUM, once)", "db", path, "bytes", size)
	start := time.Now()
	if _, err := db.Exec("VACUUM"); err != nil {
		return fmt.Errorf("vacuum to incremental auto-vacuum: %w", err)
	}
	if mode, err = pragmaInt(db, "auto_vacuum"); err != nil {
		return err
	}
	if mode != incremental {
		return fmt.Errorf("auto_vacuum is %d after VACUUM, want %d", mode, incremental)
	}
	after, _ := fileSize(path)
	log.Info("attempt log: incremental auto-vacuum on", "db", path, "took", time.Since(start).Round(time.Millisecond), "bytes", after)
	return nil
}

func pragmaInt(db *sql.DB, name string) (int64, error) {
	var v int64
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	return v, nil
}

// prune runs one retention step: it deletes up to a batch of attempts and a
// batch of archived notices past retention, in one transaction, then returns
// up to vacuumPages free pages beyond freeSlack to the file system. more
// reports that rows past retention may remain, so the writer steps again
// soon instead of after pruneEvery.
func (s *SQLite) prune(ctx context.Context) (more bool, err error) {
	p := s.pruner
	start := time.Now()
	batchA, batchE := p.attempts, p.ends
	cutoff := p.now().Add(-p.retain)
	s.ck.mu.Lock()
	defer s.ck.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("retention: begin: %w", err)
	}
	defer tx.Rollback()
	// Among the oldest rows by seq, the order they were logged in, so a
	// step reads at most a batch of rows straight off the table and no
	// index on start_us has to be kept up. Rows are logged about when
	// they start, so this finds the rows past retention within seconds.
	res, err := tx.ExecContext(ctx, `DELETE FROM attempts WHERE seq IN
		(SELECT seq FROM (SELECT seq, start_us FROM attempts ORDER BY seq LIMIT ?) WHERE start_us < ?)`,
		batchA, cutoff.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("retention: delete attempts: %w", err)
	}
	nAttempts, _ := res.RowsAffected()
	var nEnds int64
	if s.version >= archiveVersion {
		res, err = tx.ExecContext(ctx, `DELETE FROM notices WHERE rowid IN
			(SELECT rowid FROM notices WHERE ended_us < ? ORDER BY ended_us LIMIT ?)`, cutoff.UnixMicro(), batchE)
		if err != nil {
			return false, fmt.Errorf("retention: delete archived notices: %w", err)
		}
		nEnds, _ = res.RowsAffected()
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("retention: commit: %w", err)
	}
	s.ck.committed()
	// The commit is counted in the step but not in adapting the batches,
	// which only the deletes and the vacuum make longer.
	commit := time.Now()
	work := commit.Sub(start)
	if err := s.vacuum(ctx); err != nil {
		return false, err
	}
	work += time.Since(commit)
	p.observe(time.Since(start))
	p.adapt(work)
	return nAttempts == int64(batchA) || nEnds == int64(batchE), nil
}

// observe counts a step that took d.
func (p *pruner) observe(d time.Duration) {
	i, _ := slices.BinarySearch(notifier.RetentionStepBounds[:], d)
	p.steps[i].Add(1)
	p.stepsNS.Add(int64(d))
}

// adapt resizes the batches so a step takes about pruneTarget.
func (p *pruner) adapt(took time.Duration) {
	switch {
	case took > pruneTarget:
		p.attempts, p.ends = max(p.attempts/2, 10), max(p.ends/2, 1)
	case took < pruneTarget/2:
		p.attempts, p.ends = min(p.attempts*5/4+1, maxAttemptBatch), min(p.ends*5/4+1, maxNoticeBatch)
	}
}

// vacuum hands up to vacuumPages free pages beyond freeSlack back to the
// file system.
func (s *SQLite) vacuum(ctx context.Context) error {
	var free int64
	if err := s.w.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&free); err != nil {
		return fmt.Errorf("retention: freelist_count: %w", err)
	}
	if free <= freeSlack {
		return nil
	}
	// incremental_vacuum frees one page per step of its statement, so
	// its rows (none are returned) are read to the end.
	rows, err := s.w.QueryContext(ctx, fmt.Sprintf("PRAGMA incremental_vacuum(%d)", min(free-freeSlack, vacuumPages)))
	if err != nil {
		return fmt.Errorf("retention: incremental_vacuum: %w", err)
	}
	for rows.Next() {
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("retention: incremental_vacuum: %w", err)
	}
	return rows.Err()
}
