package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Checkpoints: the writer's connection has SQLite's automatic checkpoint
// off (wal_autocheckpoint = 0), so no commit of attempts or of a retention
// step copies the WAL into the database file itself. A checkpointer does it
// on a connection of its own, in PASSIVE mode, which neither waits for the
// writer nor makes it wait: the writer goes on appending to the WAL while
// pages are copied.
//
// The writer starts the WAL over from its beginning only if, when a
// transaction of its begins, every frame in the WAL has been copied. A
// writer that is never idle always has a transaction under way while a
// checkpoint runs, and the WAL would grow without end; so once it holds
// more than restartBytes, one more checkpoint takes its turn between two of
// the writer's transactions (the writer waits for it, as it waited for every
// automatic checkpoint before), copying what the last one left, and the next
// transaction starts the WAL over.
const (
	// checkpointEvery is the least time between two checkpoints while
	// the writer commits; an idle log is not checkpointed.
	checkpointEvery = time.Second
	// catchUpTries bounds the PASSIVE checkpoints run one after the other
	// to copy the frames the writer appended during the previous one.
	catchUpTries = 4
	// restartBytes is the WAL size past which a checkpoint runs between
	// two transactions of the writer.
	restartBytes = 16 << 20
)

// checkpointer copies the WAL into the database file off the writer's
// connection. Only its Run uses it; the writer calls committed, and holds
// mu for each of its transactions.
type checkpointer struct {
	db  *sql.DB // a connection of its own
	log *slog.Logger
	// kick is signalled (never blocking) after each commit of the writer.
	kick chan struct{}
	// restartFrames is restartBytes in frames (pages) of this file.
	restartFrames int64
	// mu is held by the writer for each of its transactions, and by the
	// checkpoint that lets it start the WAL over.
	mu sync.Mutex
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
	return &checkpointer{db: db, log: log, kick: make(chan struct{}, 1), restartFrames: restartBytes / max(pageSize, 512)}, nil
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

// checkpoint runs PASSIVE checkpoints until one copies every frame it found
// or catchUpTries have run; then, if the WAL holds more than restartFrames,
// one more between two of the writer's transactions.
func (c *checkpointer) checkpoint(ctx context.Context) error {
	var frames int64
	for range catchUpTries {
		var (
			done int64
			err  error
		)
		if frames, done, err = c.passive(ctx); err != nil {
			return err
		}
		if frames == done {
			break
		}
	}
	if frames <= c.restartFrames {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _, err := c.passive(ctx)
	return err
}

// passive runs one PASSIVE checkpoint and returns the frames in the WAL
// and how many of them are in the database file.
func (c *checkpointer) passive(ctx context.Context) (frames, done int64, err error) {
	var busy int64
	if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
		return 0, 0, fmt.Errorf("passive checkpoint: %w", err)
	}
	return frames, done, nil
}
