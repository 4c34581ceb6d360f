package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/notifier/notifier/notifier"
)

// ErrLogClosed is returned by Record and Sync once the log no longer accepts
// attempts: Run has returned (or is writing its final batches), or Close was
// called.
var ErrLogClosed = errors.New("attempt log closed")

const (
	// queueSize bounds the attempts waiting for the writer. Beyond it Record
	// blocks, so a slow disk slows the workers instead of growing memory.
	queueSize = 8192
	// maxBatch bounds one write transaction, so readers see rows soon and a
	// failed batch costs little to retry.
	maxBatch = 1000
	// writeTries is how often a batch is tried before Run gives up.
	writeTries = 3
	// batchWait is how long the writer lets a batch gather after its
	// first attempt arrives, unless a Sync waits for it or it fills. Each
	// commit writes every page it changed, whatever the number of rows
	// on it, so at thousands of attempts a second a few milliseconds
	// turn many small commits into one larger one; readers see a row
	// that much later.
	batchWait = 10 * time.Millisecond
)

// writeBackoff is the pause before the second and later tries of a batch.
// It is short because the writer holds the only write connection and the
// workers wait behind it.
var writeBackoff = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}

// item is what travels to the writer: an attempt to insert, or a barrier
// (done != nil) that the writer closes once everything queued before it is
// committed. Sharing one channel is what makes Sync exact.
type item struct {
	a    notifier.Attempt
	done chan struct{}
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
	st, err := s.prepare(wctx)
	if err != nil {
		return fmt.Errorf("attempt log: %w", err)
	}
	defer st.close()
	s.stmts = st
	// The checkpointer runs as long as the writer, final batches included.
	ckctx, stopCheckpoints := context.WithCancel(wctx)
	ckDone := make(chan struct{})
	go func() {
		defer close(ckDone)
		_ = s.ck.Run(ckctx) // it logs its errors and returns nil
	}()
	defer func() {
		stopCheckpoints()
		<-ckDone
	}()
	batch := make([]item, 0, maxBatch)
	// Retention steps take turns with batches of attempts: a step that
	// left rows to delete schedules the next at once (again), and the
	// select picks fairly between it and queued attempts.
	var tick <-chan time.Time
	again := make(chan struct{}, 1)
	if s.pruner != nil {
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		tick = t.C
		again <- struct{}{} // a first step at start
	}
	wait := time.NewTimer(batchWait)
	wait.Stop()
	for {
		select {
		case it := <-s.queue:
			batch = s.gather(ctx, append(batch[:0], it), wait)
			if err := s.commit(wctx, batch); err != nil {
				return err
			}
		case <-tick:
			s.pruneStep(ctx, again)
		case <-again:
			s.pruneStep(ctx, again)
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

// pruneStep runs one retention step and, when it left rows to delete,
// schedules the next on again. A failed step is logged, not fatal: the
// attempts still get written, and the next tick tries again.
func (s *SQLite) pruneStep(ctx context.Context, again chan struct{}) {
	more, err := s.prune(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("attempt log retention", "err", err)
		}
		return
	}
	if more {
		select {
		case again <- struct{}{}:
		default:
		}
	}
}

// gather adds queued items to batch, which holds one, for up to batchWait
// (on wait, a stopped timer), until it holds maxBatch, or at once when a
// Sync's barrier is among them or ctx ends.
func (s *SQLite) gather(ctx context.Context, batch []item, wait *time.Timer) []item {
	if batch[0].done != nil {
		return s.fill(batch)
	}
	wait.Reset(batchWait)
	defer wait.Stop()
	for len(batch) < maxBatch {
		select {
		case it := <-s.queue:
			batch = append(batch, it)
			if it.done != nil {
				return s.fill(batch)
			}
		case <-wait.C:
			return batch
		case <-ctx.Done():
			return s.fill(batch)
		}
	}
	return batch
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
	(id, partner, outcome, ended_us, attempts, payload)
	VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET
		partner = excluded.partner, outcome = excluded.outcome, ended_us = excluded.ended_us,
		attempts = excluded.attempts, payload = excluded.payload`

// stmts are the writer's two statements, prepared once on its connection
// and reused by every batch rather than prepared in each transaction.
type stmts struct {
	insert, archive *sql.Stmt
}

// prepare prepares the writer's statements on s.w.
func (s *SQLite) prepare(ctx context.Context) (*stmts, error) {
	insert, err := s.w.PrepareContext(ctx, insertSQL)
	if err != nil {
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	archive, err := s.w.PrepareContext(ctx, archiveSQL)
	if err != nil {
		insert.Close()
		return nil, fmt.Errorf("prepare archive: %w", err)
	}
	return &stmts{insert: insert, archive: archive}, nil
}

func (p *stmts) close() {
	p.insert.Close()
	p.archive.Close()
}

// archived is what the archive keeps of an ended notice: what retry and
// replay re-send. Never its own secrets (a re-send is signed with its
// partner's), nor its trace context (a re-send starts a trace of its own).
func archived(n *notifier.Notice) notifier.Notice {
	kept := *n
	kept.Secrets, kept.Trace = nil, ""
	return kept
}

// insert writes rows in one transaction, and archives the notice of each
// row whose Ended is set. A notice that does not encode is not archived; its
// attempt is still written.
func (s *SQLite) insert(ctx context.Context, rows []*notifier.Attempt) error {
	s.ck.mu.Lock()
	defer s.ck.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	// Bound to the transaction, the statements prepared on the writer's
	// one connection are reused, not prepared again.
	stmt := tx.StmtContext(ctx, s.stmts.insert)
	defer stmt.Close()
	archive := tx.StmtContext(ctx, s.stmts.archive)
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
		n := archived(a.Ended)
		payload, err := encodePayload(&n)
		if err != nil {
			continue // the attempt row says how it ended; nothing to re-send
		}
		_, err = archive.ExecContext(ctx,
			a.NoticeID, a.Partner, string(a.Outcome), a.Start.Add(a.Duration).UnixMicro(), a.N, payload)
		if err != nil {
			return fmt.Errorf("archive notice %s: %w", a.NoticeID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit attempts: %w", err)
	}
	s.ck.committed()
	return nil
}
