package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/notifier/notifier/notifier"
)

// followBatch bounds one Follow query, so its read transaction is short
// and never holds back a WAL checkpoint for long.
const followBatch = 1000

// attemptsWhere returns the WHERE clause for f. Conditions are left out
// rather than written as (? = ” OR col = ?), which would keep SQLite from
// using the (notice_id, seq), (outcome, seq) and (partner, seq) indexes.
// The last two are partial (migration 0003): a query uses one only if its
// WHERE clause holds the index's own term, word for word, so it is repeated
// here; it changes no result.
func attemptsWhere(f notifier.AttemptFilter) *clause {
	var c clause
	c.and("seq > ?", f.AfterSeq)
	if f.NoticeID != "" {
		c.and("notice_id = ?", f.NoticeID)
	}
	if f.Outcome != "" {
		c.and("outcome = ?", string(f.Outcome))
		if f.Outcome != notifier.Delivered {
			c.and(notDelivered)
		}
	}
	if f.Partner != "" {
		c.and("partner = ?", f.Partner)
		c.and("partner <> ''")
	}
	return &c
}

// notDelivered is the WHERE term of the partial indexes on outcome.
const notDelivered = "outcome <> 'delivered'"

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
	where := attemptsWhere(f)
	if n <= 0 {
		return s.query(ctx, s.selectSQL()+where.sql()+" ORDER BY seq", where.args...)
	}
	// Newest first so LIMIT keeps the last n, then reversed.
	as, err := s.query(ctx, s.selectSQL()+where.sql()+" ORDER BY seq DESC LIMIT ?", append(where.args, n)...)
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
		where := attemptsWhere(f)
		as, err := s.query(ctx, s.selectSQL()+where.sql()+" ORDER BY seq LIMIT ?", append(where.args, followBatch)...)
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
		where := attemptsWhere(f)
		as, err := s.query(ctx, s.selectSQL()+where.sql()+" ORDER BY seq LIMIT ?", append(where.args, followBatch)...)
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
