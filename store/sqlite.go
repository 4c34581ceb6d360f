package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
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
	// endedBatch and endedBatchBytes bound one EachEnded query: a page
	// ends at 500 notices or once its payloads reach 16 MiB, whichever
	// comes first, since one notice may hold a 1 MiB body.
	endedBatch      = 500
	endedBatchBytes = 16 << 20
	// archiveVersion is the schema version that added attempts.partner
	// and the notices table.
	archiveVersion = 2
)

// writeBackoff is the pause before the second and later tries of a batch.
// It is short because the writer holds the only write connection and the
// workers wait behind it.
var writeBackoff = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}

// SQLite is the attempt log: an append-only SQLite table with one writer
// (Run) fed by Record, and readers for tails and status. The writer also
// archives each notice when an attempt ends it (see Ended and EachEnded). A
// log opened with OpenSQLiteReadOnly only reads.
type SQLite struct {
	path string
	w    *sql.DB // the writer connection; nil when read-only
	r    *sql.DB // the read-only pool
	// version is the schema version seen at open. A read-only handle may
	// find an older schema, written by an older binary that still runs; it
	// then reads attempts without partners and an empty archive.
	version int

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

var (
	_ notifier.AttemptLog = (*SQLite)(nil)
	_ notifier.History    = (*SQLite)(nil)
)

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
	version, err := migrate(w)
	if err != nil {
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
		version:  version,
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
	return &SQLite{path: path, r: r, version: version}, nil
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
// version bump, so a crash leaves the schema at a known version. It returns
// the resulting version.
func migrate(db *sql.DB) (int, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return 0, err
	}
	slices.Sort(names)
	latest := 0
	for _, name := range names {
		prefix, _, _ := strings.Cut(filepath.Base(name), "_")
		version, err := strconv.Atoi(prefix)
		if err != nil || version <= latest {
			return 0, fmt.Errorf("migration %s: name must start with a version above %d", name, latest)
		}
		latest = version
		body, err := migrations.ReadFile(name)
		if err != nil {
			return 0, err
		}
		if err := applyMigration(db, version, string(body)); err != nil {
			return 0, fmt.Errorf("migration %s: %w", name, err)
		}
	}
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return 0, err
	}
	if version > latest {
		// A newer binary wrote this log; writing with an older schema
		// could lose columns it relies on.
		return 0, fmt.Errorf("schema version %d is newer than this binary's %d", version, latest)
	}
	return version, nil
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
	(notice_id, stamp_ms, n, due_ms, start_us, duration_us, url, status, outcome, error, response, next_due_ms, partner)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// archiveSQL keeps the last end of each notice: a notice retried after it
// ended and ending again replaces its row.
const archiveSQL = `INSERT INTO notices
	(id, stamp_ms, partner, outcome, ended_us, attempts, url, payload)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET
		stamp_ms = excluded.stamp_ms, partner = excluded.partner,
		outcome = excluded.outcome, ended_us = excluded.ended_us,
		attempts = excluded.attempts, url = excluded.url, payload = excluded.payload`

// insert writes rows in one transaction, and archives the notice of each
// row whose Ended is set. A notice that does not encode is not archived; its
// attempt is still written.
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
	archive, err := tx.PrepareContext(ctx, archiveSQL)
	if err != nil {
		return fmt.Errorf("prepare archive: %w", err)
	}
	defer archive.Close()
	for _, a := range rows {
		var next sql.NullInt64
		if !a.Next.IsZero() {
			next = sql.NullInt64{Int64: a.Next.UnixMilli(), Valid: true}
		}
		_, err := stmt.ExecContext(ctx,
			a.NoticeID, a.Stamp.UnixMilli(), a.N, a.Due.UnixMilli(),
			a.Start.UnixMicro(), a.Duration.Microseconds(),
			a.URL, a.Status, string(a.Outcome), a.Error, a.Response, next, a.Partner)
		if err != nil {
			return fmt.Errorf("insert attempts: %w", err)
		}
		if a.Ended == nil {
			continue
		}
		payload, err := encodePayload(a.Ended)
		if err != nil {
			continue // the attempt row says how it ended; nothing to re-send
		}
		_, err = archive.ExecContext(ctx,
			a.NoticeID, a.Ended.Stamp.UnixMilli(), a.Partner, string(a.Outcome),
			a.Start.Add(a.Duration).UnixMicro(), a.N, a.URL, payload)
		if err != nil {
			return fmt.Errorf("archive notice %s: %w", a.NoticeID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit attempts: %w", err)
	}
	return nil
}

// attemptsWhere returns the WHERE clause for f and its arguments.
// Conditions are left out rather than written as (? = ” OR col = ?), which
// would keep SQLite from using the (notice_id, seq), (outcome, seq) and
// (partner, seq) indexes.
func attemptsWhere(f notifier.AttemptFilter) (string, []any) {
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
	if f.Partner != "" {
		conds = append(conds, "partner = ?")
		args = append(args, f.Partner)
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

const selectColumns = `SELECT seq, notice_id, stamp_ms, n, due_ms, start_us, duration_us,
	url, status, outcome, error, response, next_due_ms, partner`

// selectSQL returns the SELECT that query scans, without its WHERE clause.
func (s *SQLite) selectSQL() string {
	if s.version < archiveVersion {
		// Before the partner column. SQLite flattens the subquery, so
		// the WHERE clause still uses the indexes of attempts.
		return selectColumns + ` FROM (SELECT *, '' AS partner FROM attempts)`
	}
	return selectColumns + ` FROM attempts`
}

// Last returns the last n attempts that match f (all of them if n <= 0),
// oldest first.
func (s *SQLite) Last(ctx context.Context, f notifier.AttemptFilter, n int) ([]notifier.Attempt, error) {
	where, args := attemptsWhere(f)
	if n <= 0 {
		return s.query(ctx, s.selectSQL()+where+" ORDER BY seq", args...)
	}
	// Newest first so LIMIT keeps the last n, then reversed.
	as, err := s.query(ctx, s.selectSQL()+where+" ORDER BY seq DESC LIMIT ?", append(args, n)...)
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
	return s.Last(ctx, notifier.AttemptFilter{NoticeID: id}, 0)
}

// Follow calls fn for every attempt matching f, oldest first, then polls
// every poll for new ones and calls fn for those, until ctx ends (Follow
// returns nil) or fn returns an error (Follow returns it). Each poll is a
// short query of at most 1000 rows, and fn runs after the query has ended:
// a read transaction held open would stop WAL checkpoints and let the WAL
// grow without bound while a tail runs. A poll <= 0 means one second.
func (s *SQLite) Follow(ctx context.Context, f notifier.AttemptFilter, poll time.Duration, fn func(notifier.Attempt) error) error {
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		where, args := attemptsWhere(f)
		as, err := s.query(ctx, s.selectSQL()+where+" ORDER BY seq LIMIT ?", append(args, followBatch)...)
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
func (s *SQLite) Each(ctx context.Context, f notifier.AttemptFilter, fn func(notifier.Attempt) error) error {
	for {
		where, args := attemptsWhere(f)
		as, err := s.query(ctx, s.selectSQL()+where+" ORDER BY seq LIMIT ?", append(args, followBatch)...)
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

// query runs a SELECT of selectColumns on the read pool and reads
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
			&a.URL, &a.Status, &outcome, &a.Error, &a.Response, &next, &a.Partner)
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

// noticesWhere returns the conditions for f joined by AND, and their
// arguments. Like attemptsWhere it leaves out the zero fields, so the
// (ended_us) and (outcome, ended_us) indexes stay usable.
func noticesWhere(f notifier.NoticeFilter) ([]string, []any) {
	var conds []string
	var args []any
	if !f.Since.IsZero() {
		conds = append(conds, "ended_us >= ?")
		args = append(args, ceilMicro(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, "ended_us < ?")
		args = append(args, ceilMicro(f.Until))
	}
	if f.Outcome != "" {
		conds = append(conds, "outcome = ?")
		args = append(args, string(f.Outcome))
	}
	if f.Partner != "" {
		conds = append(conds, "partner = ?")
		args = append(args, f.Partner)
	}
	return conds, args
}

// ceilMicro is t in Unix microseconds rounded up, so that for an end time e
// kept in whole microseconds, e >= ceilMicro(t) exactly when e >= t, and
// e < ceilMicro(t) exactly when e < t.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro() // rounds down, also before 1970
	if t.After(time.UnixMicro(us)) {
		us++
	}
	return us
}

// Ended returns the archived notice id as it was when it last ended
// (delivered, given up or dropped). It returns an error wrapping
// notifier.ErrNotFound if id never ended or the log predates the archive,
// and one wrapping notifier.ErrCorruptArchive if its stored payload does
// not decode.
func (s *SQLite) Ended(ctx context.Context, id string) (notifier.EndedNotice, error) {
	if s.version < archiveVersion {
		return notifier.EndedNotice{}, fmt.Errorf("archived notice %s: %w", id, notifier.ErrNotFound)
	}
	rows, _, err := s.endedQuery(ctx, "SELECT "+endedColumns+" FROM notices WHERE id = ?", 1, id)
	if err != nil {
		return notifier.EndedNotice{}, fmt.Errorf("read archived notice %s: %w", id, err)
	}
	if len(rows) == 0 {
		return notifier.EndedNotice{}, fmt.Errorf("archived notice %s: %w", id, notifier.ErrNotFound)
	}
	return rows[0].decode()
}

// EachEnded calls fn for every archived notice matching f, oldest end first,
// and returns fn's first error. It reads pages of at most 500 notices in
// short queries and calls fn between them, never inside a read transaction,
// so fn may take its time without holding back WAL checkpoints. A notice
// that ends again while EachEnded runs may be visited twice or not at all.
//
// A notice whose stored payload does not decode is skipped; if any were,
// EachEnded returns, after visiting all the others, an error that counts them
// and wraps notifier.ErrCorruptArchive.
func (s *SQLite) EachEnded(ctx context.Context, f notifier.NoticeFilter, fn func(notifier.EndedNotice) error) error {
	if s.version < archiveVersion {
		return nil
	}
	conds, args := noticesWhere(f)
	// Keyset paging on (ended_us, rowid): ended_us alone is not unique,
	// and both indexes keep their entries in this order.
	conds = append(conds, "(ended_us, rowid) > (?, ?)")
	// LIMIT one more than a page tells endedQuery whether rows follow.
	q := "SELECT " + endedColumns + " FROM notices WHERE " +
		strings.Join(conds, " AND ") + " ORDER BY ended_us, rowid LIMIT ?"
	var (
		afterUS    int64 = math.MinInt64
		afterRowID int64
		skipped    int
		firstErr   error
	)
	for {
		page, more, err := s.endedQuery(ctx, q, endedBatch, append(args, afterUS, afterRowID, endedBatch+1)...)
		if err != nil {
			return fmt.Errorf("read archived notices: %w", err)
		}
		for _, r := range page {
			afterUS, afterRowID = r.endedUS, r.rowid
			e, err := r.decode()
			if err != nil {
				if skipped++; firstErr == nil {
					firstErr = err
				}
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if !more {
			break
		}
	}
	if skipped > 0 {
		return fmt.Errorf("skipped %d archived notices: %w", skipped, firstErr)
	}
	return nil
}

// CountEnded returns how many archived notices match f, counting those whose
// payload does not decode.
func (s *SQLite) CountEnded(ctx context.Context, f notifier.NoticeFilter) (int, error) {
	if s.version < archiveVersion {
		return 0, nil
	}
	q := "SELECT count(*) FROM notices"
	conds, args := noticesWhere(f)
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	var n int
	if err := s.r.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count archived notices: %w", err)
	}
	return n, nil
}

const endedColumns = "rowid, id, partner, outcome, ended_us, attempts, payload"

// endedRow is a row of notices as read, before its payload is decoded.
type endedRow struct {
	rowid, endedUS int64
	id, partner    string
	outcome        string
	attempts       int
	payload        []byte
}

func (r *endedRow) decode() (notifier.EndedNotice, error) {
	n, err := decodePayload(r.id, r.payload)
	if err != nil {
		return notifier.EndedNotice{}, fmt.Errorf("%w: %w", notifier.ErrCorruptArchive, err)
	}
	return notifier.EndedNotice{
		Notice:   n,
		Outcome:  notifier.Outcome(r.outcome),
		Ended:    time.UnixMicro(r.endedUS),
		Attempts: r.attempts,
		Partner:  r.partner,
	}, nil
}

// endedQuery runs q, a SELECT of endedRow's columns, on the read pool and
// reads up to limit rows before returning, so the read transaction ends
// here. It also stops once the payloads read reach endedBatchBytes. more
// reports whether it stopped early or at limit, so rows may follow.
func (s *SQLite) endedQuery(ctx context.Context, q string, limit int, args ...any) (page []endedRow, more bool, err error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	size := 0
	for rows.Next() {
		if len(page) == limit || size >= endedBatchBytes {
			return page, true, nil
		}
		var r endedRow
		if err := rows.Scan(&r.rowid, &r.id, &r.partner, &r.outcome, &r.endedUS, &r.attempts, &r.payload); err != nil {
			return nil, false, err
		}
		size += len(r.payload)
		page = append(page, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	return page, false, nil
}
