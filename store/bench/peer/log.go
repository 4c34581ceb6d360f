package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"time"
)

// schema is notifier's attempts table and its indexes as migrated
// (store/migrations, 0003 made two of them partial),
// so that asynq's attempts cost the log what notifier's attempts do.
const schema = `
CREATE TABLE attempts (
	seq         INTEGER PRIMARY KEY,
	notice_id   TEXT    NOT NULL,
	stamp_ms    INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	due_ms      INTEGER NOT NULL,
	start_us    INTEGER NOT NULL,
	duration_us INTEGER NOT NULL,
	url         TEXT    NOT NULL,
	status      INTEGER NOT NULL,
	outcome     TEXT    NOT NULL,
	error       TEXT    NOT NULL DEFAULT '',
	response    TEXT    NOT NULL DEFAULT '',
	next_due_ms INTEGER,
	partner     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX attempts_notice_seq ON attempts (notice_id, seq);
CREATE INDEX attempts_outcome_seq ON attempts (outcome, seq) WHERE outcome <> 'delivered';
CREATE INDEX attempts_partner_seq ON attempts (partner, seq) WHERE partner <> '';
`

// attemptLog appends rows through one writer connection, in transactions
// of whatever has queued up (at most 1,000 rows), as notifier's writer
// does.
type attemptLog struct {
	db     *sql.DB
	rows   chan row
	logged atomic.Int64
}

func openLog(path string) (*attemptLog, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("attempt log schema: %w", err)
	}
	return &attemptLog{db: db, rows: make(chan row, 4096)}, nil
}

// run writes rows until ctx ends, then writes what is still queued.
func (l *attemptLog) run(ctx context.Context) error {
	batch := make([]row, 0, 1000)
	for {
		select {
		case r := <-l.rows:
			batch = append(batch[:0], r)
		case <-ctx.Done():
			for {
				select {
				case r := <-l.rows:
					batch = append(batch[:0], r)
					if err := l.write(batch); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case r := <-l.rows:
				batch = append(batch, r)
			default:
				break more
			}
		}
		if err := l.write(batch); err != nil {
			return err
		}
	}
}

func (l *attemptLog) write(batch []row) error {
	tx, err := l.db.Begin()
	if err != nil {
		return fmt.Errorf("attempt log: %w", err)
	}
	st, err := tx.Prepare(`INSERT INTO attempts (notice_id, stamp_ms, n, due_ms, start_us, duration_us, url, status, outcome, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("attempt log: %w", err)
	}
	for _, r := range batch {
		if _, err := st.Exec(r.id, r.stamp, r.n, r.stamp, r.startUS, r.dur, r.url, r.status, r.outcome, r.err); err != nil {
			tx.Rollback()
			return fmt.Errorf("attempt log: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("attempt log: %w", err)
	}
	l.logged.Add(int64(len(batch)))
	return nil
}

// waitLogged waits until n rows are written.
func (l *attemptLog) waitLogged(n int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for l.logged.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("attempt log: %d of %d rows within %s", l.logged.Load(), n, limit)
		}
		time.Sleep(10 * time.Millisecond) // the writer goroutine, polled
	}
	return nil
}
