package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"
)

// Checkpoints: the writer's connection has SQLite's automatic checkpoint
// off (wal_autocheckpoint = 0), so no commit of attempts or of a retention
// step ever copies the WAL into the database file itself. A checkpointer
// does it on a connection of its own, in PASSIVE mode, which never waits for
// the writer nor makes it wait: the writer goes on appending to the WAL
// while pages are copied.
const (
	// checkpointEvery is the least time between two checkpoints while
	// the writer commits; an idle log is not checkpointed.
	checkpointEvery = time.Second
	// catchUpTries bounds the PASSIVE checkpoints run one after the other
	// to copy the frames the writer appended during the previous one. The
	// writer starts the WAL over from its beginning only once every frame
	// has been copied, so the checkpointer tries to get there.
	catchUpTries = 8
)

// checkpointer copies the WAL into the database file off the writer's
// connection. Only its Run uses it; the writer calls committed.
type checkpointer struct {
	db  *sql.DB // a connection of its own
	log *slog.Logger
	// kick is signalled (never blocking) after each commit of the writer.
	kick chan struct{}
	// walLimit is the WAL's size, in frames, past which the checkpointer
	// stops being passive: a RESTART checkpoint waits for the writer's
	// transaction to end and makes the next one wait, but lets the
	// writer start the WAL over, so it cannot grow without bound when
	// PASSIVE ones never catch up.
	walLimit int64
}

// newCheckpointer opens the checkpointer's connection to path.
func newCheckpointer(path string, log *slog.Logger) (*checkpointer, error) {
	db, err := openDB(path, "_busy_timeout=5000&_synchronous=NORMAL")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	pageSize, err := pragmaInt(db, "page_size")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("attempt log checkpointer: %w", err)
	}
	return &checkpointer{db: db, log: log, kick: make(chan struct{}, 1), walLimit: walLimit / max(pageSize, 512)}, nil
}

// committed tells the checkpointer that the writer committed.
func (c *checkpointer) committed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run checkpoints at most every checkpointEvery while the writer commits,
// until ctx ends; then it returns nil. A failed checkpoint is logged and
// tried again at the next commit.
func (c *checkpointer) Run(ctx context.Context) error {
	var last time.Time
	wait := time.NewTimer(0)
	wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		}
		if d := checkpointEvery - time.Since(last); d > 0 {
			wait.Reset(d)
			select {
			case <-ctx.Done():
				wait.Stop()
				return nil
			case <-wait.C:
			}
		}
		last = time.Now()
		if err := c.checkpoint(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("attempt log checkpoint", "err", err)
		}
	}
}

// checkpoint runs PASSIVE checkpoints until every frame of the WAL is in
// the database file or catchUpTries have run, then a RESTART one if the WAL
// has grown past walLimit.
func (c *checkpointer) checkpoint(ctx context.Context) error {
	var frames int64
	for range catchUpTries {
		var busy, done int64
		err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
		if err != nil {
			return fmt.Errorf("passive checkpoint: %w", err)
		}
		if frames == done {
			return nil
		}
	}
	if frames > c.walLimit {
		if _, err := c.db.ExecContext(ctx, "PRAGMA wal_checkpoint(RESTART)"); err != nil {
			return fmt.Errorf("restart checkpoint: %w", err)
		}
	}
	return nil
}
