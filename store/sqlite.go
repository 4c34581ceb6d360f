package store

import (
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/notifier/notifier/notifier"
)

//go:embed migrations/*.sql
var migrations embed.FS

// errReadOnly is returned by the writing methods of a log opened with
// OpenSQLiteReadOnly.
var errReadOnly = errors.New("attempt log opened read-only")

// archiveVersion is the schema version that added attempts.partner
// and the notices table.
const archiveVersion = 2

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
	// pruner deletes rows past retention between batches; nil keeps
	// everything.
	pruner *pruner
	log    *slog.Logger
	// stmts are the writer's prepared statements; only Run's goroutine
	// uses them.
	stmts *stmts
	// ck checkpoints the WAL while Run runs; nil when read-only.
	ck *checkpointer

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

// OpenSQLite opens the attempt log at path for writing and reading, creating
// the file with mode 0600 if needed (its directory must exist), and applies
// pending migrations. Attempts are written only while Run is running. It
// keeps every row: OpenSQLiteWith sets a retention.
func OpenSQLite(path string) (*SQLite, error) {
	return OpenSQLiteWith(path, SQLiteOptions{})
}

// OpenSQLiteWith is OpenSQLite with options. A file written by a release
// before incremental auto-vacuum is rewritten once (VACUUM, logged) so that
// retention can hand freed pages back to the file system.
func OpenSQLiteWith(path string, o SQLiteOptions) (*SQLite, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
	// Before the first migration, so a new file takes it without a VACUUM.
	if err := setAutoVacuum(w, path, log); err != nil {
		w.Close()
		return nil, fmt.Errorf("attempt log %s: %w", path, err)
	}
	if _, err := w.Exec(fmt.Sprintf("PRAGMA journal_size_limit = %d", walLimit)); err != nil {
		w.Close()
		return nil, fmt.Errorf("attempt log %s: journal_size_limit: %w", path, err)
	}
	version, err := migrate(w)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate attempt log %s: %w", path, err)
	}
	// Checkpoints run on the checkpointer's connection (checkpoint.go).
	if _, err := w.Exec("PRAGMA wal_autocheckpoint = 0"); err != nil {
		w.Close()
		return nil, fmt.Errorf("attempt log %s: wal_autocheckpoint: %w", path, err)
	}
	ck, err := newCheckpointer(path, log)
	if err != nil {
		w.Close()
		return nil, err
	}
	r, err := openReader(path)
	if err != nil {
		ck.db.Close()
		w.Close()
		return nil, err
	}
	s := &SQLite{
		ck:       ck,
		path:     path,
		w:        w,
		r:        r,
		version:  version,
		queue:    make(chan item, queueSize),
		log:      log,
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if o.Retain > 0 {
		s.pruner = newPruner(o)
	}
	return s, nil
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
	if s.ck != nil {
		errs = append(errs, s.ck.db.Close())
	}
	errs = append(errs, s.r.Close())
	if s.w != nil {
		// Last: the last connection to close checkpoints the whole WAL
		// and deletes it.
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close attempt log: %w", err)
	}
	return nil
}

// clause is a WHERE clause being built: conditions joined by AND, and the
// arguments of their placeholders in order. The attempt queries (Filter)
// and the archive queries (NoticeFilter) both build theirs with it.
type clause struct {
	conds []string
	args  []any
}

// and adds cond, whose placeholders take args.
func (c *clause) and(cond string, args ...any) {
	c.conds = append(c.conds, cond)
	c.args = append(c.args, args...)
}

// sql returns " WHERE <conds joined by AND>", or "" without conditions.
func (c *clause) sql() string {
	if len(c.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c.conds, " AND ")
}
