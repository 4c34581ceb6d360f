package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/notifier/notifier/notifier"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrLogClosed is returned by Record and Sync once the log no longer accepts
// attempts: Run has returned (or is writing its final batches), or Close was
// called.
var ErrLogClosed = errors.New("attempt log closed")

// errReadOnly is returned by the writing methods of a log opened with
// OpenSQLiteReadOnly.
var errReadOnly = errors.New("attempt log opened read-only")

const (
	// queueSize bounds the attempts waiting for the writer. Beyond it Record
	// blocks, so a slow disk slows the workers instead of growing memory.
	queueSize = 8192
	// maxBatch bounds one write transaction, so readers see rows soon and a
	// failed batch costs little to retry.
	maxBatch = 1000
	// writeTries is how often a batch is tried before Run gives up.
	writeTries = 3
	// followBatch bounds one Follow query, so its read transaction is short
	// and never holds back a WAL checkpoint for long.
	followBatch = 1000
)

// writeBackoff is the pause before the second and later tries of a batch.
// It is short because the writer holds the only write connection and the
// workers wait behind it.
var writeBackoff = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}

// SQLite is the attempt log: an append-only SQLite table with one writer
// (Run) fed by Record, and readers for tails and status. A log opened with
// OpenSQLiteReadOnly only reads.
type SQLite struct {
	path string
	w    *sql.DB // the writer connection; nil when read-only
	r    *sql.DB // the read-only pool

	queue chan item

	// mu makes "intake closed" and "send to queue" exclusive: Record and
	// Sync send while holding the read lock, and stop takes the write lock
	// to set closed, so once stop returns nothing more can be queued and
	// the final drain sees every accepted attempt.
	mu       sync.RWMutex
	closed   bool
	stopping chan struct{} // closed when intake stops, to free blocked senders
	stopOnce sync.Once
	done     chan struct{} // closed when Run returns
	running  atomic.Bool
}

var _ notifier.AttemptLog = (*SQLite)(nil)

// item is what travels to the writer: an attempt to insert, or a barrier
// (done != nil) that the writer closes once everything queued before it is
// committed. Sharing one channel is what makes Sync exact.
type item struct {
	a    notifier.Attempt
	done chan struct{}
}

// OpenSQLite opens the attempt log at path for writing and reading, creating
// the file with mode 0600 if needed (its directory must exist), and applies
// pending migrations. Attempts are written only while Run is running.
func OpenSQLite(path string) (*SQLite, error) {
	// SQLite creates the -wal and -shm files with the database file's mode,
	// so creating the file ourselves keeps all three private. Response
	// snippets in the log may hold partner data.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create attempt log: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create attempt log: %w", err)
	}
	w, err := openDB(path, "_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate&_synchronous=NORMAL&_foreign_keys=1")
	if err != nil {
		return nil, err
	}
	// One connection: SQLite allows one writer at a time anyway, and a
	// single connection turns lock contention into queueing in database/sql.
	w.SetMaxOpenConns(1)
	if err := migrate(w); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate attempt log %s: %w", path, err)
	}
	r, err := openReader(path)
	if err != nil {
		w.Close()
		return nil, err
	}
	return &SQLite{
		path:     path,
		w:        w,
		r:        r,
		queue:    make(chan item, queueSize),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}, nil
}

// OpenSQLiteReadOnly opens an existing attempt log for reading, as `tail` and
// `status` do while a server writes it. A missing file is an error wrapping
// os.ErrNotExist rather than an empty log, so a mistyped path is noticed.
// Record, Sync and Run return an error on the result.
func OpenSQLiteReadOnly(path string) (*SQLite, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no attempt log at %s: %w", path, os.ErrNotExist)
		}
		return nil, fmt.Errorf("open attempt log: %w", err)
	}
	r, err := openReader(path)
	if err != nil {
		return nil, err
	}
	var version int
	if err := r.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		r.Close()
		return nil, fmt.Errorf("open attempt log %s: %w", path, err)
	}
	if version == 0 {
		r.Close()
		return nil, fmt.Errorf("%s is not an attempt log (no schema)", path)
	}
	return &SQLite{path: path, r: r}, nil
}

func openReader(path string) (*sql.DB, error) {
	// A separate pool so reads never queue behind the writer's connection;
	// in WAL mode they don't wait for its transactions either.
	return openDB(path, "mode=ro&_busy_timeout=5000")
}

func openDB(path, query string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open attempt log: %w", err)
	}
	// A URI, with the path escaped, so a '?', '#' or '%' in the path is
	// not read as the start of the options.
	dsn := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: query}).String()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open attempt log %s: %w", path, err)
	}
	// sql.Open connects lazily; connect now so a bad file fails here.
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open attempt log %s: %w", path, err)
	}
	return db, nil
}

// migrate applies each migrations/NNNN_name.sql whose NNNN is above the
// database's user_version, each in its own transaction together with the
// version bump, so a crash leaves the schema at a known version.
func migrate(db *sql.DB) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	latest := 0
	for _, name := range names {
		prefix, _, _ := strings.Cut(filepath.Base(name), "_")
		version, err := strconv.Atoi(prefix)
		if err != nil || version <= latest {
			return fmt.Errorf("migration %s: name must start with a version above %d", name, latest)
		}
		latest = version
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if err := applyMigration(db, version, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > latest {
		// A newer binary wrote this log; writing with an older schema
		// could lose columns it relies on.
		return fmt.Errorf("schema version %d is newer than this binary's %d", version, latest)
	}
	return nil
}

func applyMigration(db *sql.DB, version int, body string) error {
	// The writer DSN begins transactions IMMEDIATE, so two processes opening
	// the same new file serialise here and the second sees the new version.
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRow("PRAGMA user_version").Scan(&current); err != nil {
		return err
	}
	if current >= version {
		return nil
	}
	if _, err := tx.Exec(body); err != nil {
		return err
	}
	// PRAGMA takes no bound parameters; version is an int we parsed.
	if _, err := tx.Exec("PRAGMA user_version = " + strconv.Itoa(version)); err != nil {
		return err
	}
	return tx.Commit()
}

// Close stops intake (later Records return ErrLogClosed) and closes the
// database. Call it after Run has returned: attempts still queued are lost.
func (s *SQLite) Close() error {
	s.stop()
	var errs []error
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	errs = append(errs, s.r.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close attempt log: %w", err)
	}
	return nil
}

// Record queues a for the writer; Seq is assigned when it is written, and a
// is visible to readers once its batch commits (see Sync). Record blocks
// while the queue is full, so a slow disk slows the callers down instead of
// growing memory. It returns ctx.Err() if ctx ends first, and ErrLogClosed
// once Run's context has ended or Run has returned.
func (s *SQLite) Record(ctx context.Context, a notifier.Attempt) error {
	return s.send(ctx, item{a: a})
}

// Sync blocks until every attempt Recorded before the call is committed. It
// returns ctx.Err() if ctx ends first, and ErrLogClosed if Run stops before
// committing them.
func (s *SQLite) Sync(ctx context.Context) error {
	done := make(chan struct{})
	if err := s.send(ctx, item{done: done}); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-s.done:
		// Run may have committed the barrier just before returning.
		select {
		case <-done:
			return nil
		default:
			return ErrLogClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *SQLite) send(ctx context.Context, it item) error {
	if s.w == nil {
		return errReadOnly
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrLogClosed
	}
	select {
	case s.queue <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopping:
		return ErrLogClosed
	}
}

// stop closes intake. Closing stopping first frees senders blocked on a full
// queue, so taking the write lock cannot wait on them forever.
func (s *SQLite) stop() {
	if s.w == nil {
		return // read-only: there is no intake
	}
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	})
}

// Run is the log's only writer. It waits for a queued attempt, takes up to
// maxBatch queued ones and commits them in one transaction, which is what
// makes the log fast (one fsync per batch, not per row). When ctx ends it
// stops intake, writes everything still queued and returns nil. A batch that
// fails is retried a few times after a short pause; if it still fails, Run
// returns the error and the queued attempts are lost. Run must be called at
// most once.
func (s *SQLite) Run(ctx context.Context) error {
	if s.w == nil {
		return errReadOnly
	}
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("attempt log: Run called twice")
	}
	defer close(s.done)
	defer s.stop()

	// A batch that has been taken off the queue is written even if ctx ends
	// meanwhile: cancelling it would lose it.
	wctx := context.WithoutCancel(ctx)
	batch := make([]item, 0, maxBatch)
	for {
		select {
		case it := <-s.queue:
			batch = s.fill(append(batch[:0], it))
			if err := s.commit(wctx, batch); err != nil {
				return err
			}
		case <-ctx.Done():
			s.stop()
			// Nothing can be queued any more, so the queue's length is
			// the exact amount left to write.
			for len(s.queue) > 0 {
				batch = s.fill(batch[:0])
				if err := s.commit(wctx, batch); err != nil {
					return err
				}
			}
			return nil
		}
	}
}

// fill appends queued items to batch without waiting, up to maxBatch.
func (s *SQLite) fill(batch []item) []item {
	for len(batch) < maxBatch {
		select {
		case it := <-s.queue:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// commit writes the attempts of batch, retrying, then releases its barriers.
func (s *SQLite) commit(ctx context.Context, batch []item) error {
	rows := make([]*notifier.Attempt, 0, len(batch))
	for i := range batch {
		if batch[i].done == nil {
			rows = append(rows, &batch[i].a)
		}
	}
	if len(rows) > 0 {
		var err error
		for try := 0; try < writeTries; try++ {
			if try > 0 {
				// Not cut short by ctx: shutdown is exactly when the
				// final batches must still get their retries, and the
				// pauses total a quarter of a second.
				time.Sleep(writeBackoff[min(try-1, len(writeBackoff)-1)])
			}
			if err = s.insert(ctx, rows); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("write %d attempts (%d tries): %w", len(rows), writeTries, err)
		}
	}
	for i := range batch {
		if batch[i].done != nil {
			close(batch[i].done)
		}
	}
	return nil
}

const insertSQL = `INSERT INTO attempts
	(notice_id, stamp_ms, n, due_ms, start_us, duration_us, url, status, outcome, error, response, next_due_ms)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// insert writes rows in one transaction.
func (s *SQLite) insert(ctx context.Context, rows []*notifier.Attempt) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	// Prepared once per transaction: parsing the INSERT per row would cost
	// more than executing it.
	stmt, err := tx.PrepareContext(ctx, insertSQL)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer stmt.Close()
	for _, a := range rows {
		var next sql.NullInt64
		if !a.Next.IsZero() {
			next = sql.NullInt64{Int64: a.Next.UnixMilli(), Valid: true}
		}
		_, err := stmt.ExecContext(ctx,
			a.NoticeID, a.Stamp.UnixMilli(), a.N, a.Due.UnixMilli(),
			a.Start.UnixMicro(), a.Duration.Microseconds(),
			a.URL, a.Status, string(a.Outcome), a.Error, a.Response, next)
		if err != nil {
			return fmt.Errorf("insert attempts: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit attempts: %w", err)
	}
	return nil
}

// Filter selects attempts. Zero values select everything.
type Filter struct {
	NoticeID string
	Outcome  notifier.Outcome
	// AfterSeq selects attempts with Seq > AfterSeq; it is how a tail
	// resumes where it stopped.
	AfterSeq int64
}

// where returns the WHERE clause for f and its arguments. Conditions are
// left out rather than written as (? = ” OR col = ?), which would keep
// SQLite from using the (notice_id, seq) and (outcome, seq) indexes.
func (f Filter) where() (string, []any) {
	conds := []string{"seq > ?"}
	args := []any{f.AfterSeq}
	if f.NoticeID != "" {
		conds = append(conds, "notice_id = ?")
		args = append(args, f.NoticeID)
	}
	if f.Outcome != "" {
		conds = append(conds, "outcome = ?")
		args = append(args, string(f.Outcome))
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

const selectSQL = `SELECT seq, notice_id, stamp_ms, n, due_ms, start_us, duration_us,
	url, status, outcome, error, response, next_due_ms FROM attempts`

// Last returns the last n attempts that match f (all of them if n <= 0),
// oldest first.
func (s *SQLite) Last(ctx context.Context, f Filter, n int) ([]notifier.Attempt, error) {
	where, args := f.where()
	if n <= 0 {
		return s.query(ctx, selectSQL+where+" ORDER BY seq", args...)
	}
	// Newest first so LIMIT keeps the last n, then reversed.
	as, err := s.query(ctx, selectSQL+where+" ORDER BY seq DESC LIMIT ?", append(args, n)...)
	if err != nil {
		return nil, err
	}
	slices.Reverse(as)
	return as, nil
}

// NoticeAttempts returns every attempt of notice id, oldest first. A notice
// without attempts gives an empty slice, not an error: it may still be
// waiting for its first one.
func (s *SQLite) NoticeAttempts(ctx context.Context, id string) ([]notifier.Attempt, error) {
	return s.Last(ctx, Filter{NoticeID: id}, 0)
}

// Follow calls fn for every attempt matching f, oldest first, then polls
// every poll for new ones and calls fn for those, until ctx ends (Follow
// returns nil) or fn returns an error (Follow returns it). Each poll is a
// short query of at most 1000 rows, and fn runs after the query has ended:
// a read transaction held open would stop WAL checkpoints and let the WAL
// grow without bound while a tail runs. A poll <= 0 means one second.
func (s *SQLite) Follow(ctx context.Context, f Filter, poll time.Duration, fn func(notifier.Attempt) error) error {
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		where, args := f.where()
		as, err := s.query(ctx, selectSQL+where+" ORDER BY seq LIMIT ?", append(args, followBatch)...)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow attempts: %w", err)
		}
		for _, a := range as {
			if err := fn(a); err != nil {
				return err
			}
			f.AfterSeq = a.Seq
		}
		if len(as) == followBatch {
			// More may be waiting; don't wait a poll per 1000 rows.
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Each calls fn for every attempt matching f, oldest first, and returns at
// the end of the log. Like Follow it reads pages of at most 1000 rows in
// short queries, so a log of any size is printed in bounded memory.
func (s *SQLite) Each(ctx context.Context, f Filter, fn func(notifier.Attempt) error) error {
	for {
		where, args := f.where()
		as, err := s.query(ctx, selectSQL+where+" ORDER BY seq LIMIT ?", append(args, followBatch)...)
		if err != nil {
			return fmt.Errorf("read attempts: %w", err)
		}
		for _, a := range as {
			if err := fn(a); err != nil {
				return err
			}
			f.AfterSeq = a.Seq
		}
		if len(as) < followBatch {
			return nil
		}
	}
}

// query runs a SELECT of selectSQL's columns on the read pool and reads
// every row before returning, so the statement's read transaction ends here.
func (s *SQLite) query(ctx context.Context, q string, args ...any) ([]notifier.Attempt, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query attempts: %w", err)
	}
	defer rows.Close()
	var as []notifier.Attempt
	for rows.Next() {
		var (
			a                              notifier.Attempt
			stampMS, dueMS, startUS, durUS int64
			outcome                        string
			next                           sql.NullInt64
		)
		err := rows.Scan(&a.Seq, &a.NoticeID, &stampMS, &a.N, &dueMS, &startUS, &durUS,
			&a.URL, &a.Status, &outcome, &a.Error, &a.Response, &next)
		if err != nil {
			return nil, fmt.Errorf("scan attempt: %w", err)
		}
		a.Stamp = time.UnixMilli(stampMS)
		a.Due = time.UnixMilli(dueMS)
		a.Start = time.UnixMicro(startUS)
		a.Duration = time.Duration(durUS) * time.Microsecond
		a.Outcome = notifier.Outcome(outcome)
		if next.Valid {
			a.Next = time.UnixMilli(next.Int64)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read attempts: %w", err)
	}
	return as, nil
}
