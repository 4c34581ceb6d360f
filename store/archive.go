package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/notifier/notifier/notifier"
)

const (
	// endedBatch and endedBatchBytes bound one EachEnded query: a page
	// ends at 500 notices or once its payloads reach 16 MiB, whichever
	// comes first, since one notice may hold a 1 MiB body.
	endedBatch      = 500
	endedBatchBytes = 16 << 20
)

// noticesWhere returns the WHERE clause for f. Like attemptsWhere it leaves out
// the zero fields, so the (ended_us) and (outcome, ended_us) indexes stay
// usable, and repeats the partial index's term for the outcomes it holds.
func noticesWhere(f notifier.NoticeFilter) *clause {
	var c clause
	if !f.Since.IsZero() {
		c.and("ended_us >= ?", ceilMicro(f.Since))
	}
	if !f.Until.IsZero() {
		c.and("ended_us < ?", ceilMicro(f.Until))
	}
	if f.Outcome != "" {
		c.and("outcome = ?", string(f.Outcome))
		if f.Outcome != notifier.Delivered {
			c.and(notDelivered)
		}
	}
	if f.Partner != "" {
		c.and("partner = ?", f.Partner)
	}
	return &c
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
// and one wrapping notifier.ErrCorruptArchive if its stored payload does not decode.
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
	where := noticesWhere(f)
	// Keyset paging on (ended_us, rowid): ended_us alone is not unique,
	// and both indexes keep their entries in this order. Its arguments
	// are each page's, appended per query.
	where.and("(ended_us, rowid) > (?, ?)")
	// LIMIT one more than a page tells endedQuery whether rows follow.
	q := "SELECT " + endedColumns + " FROM notices" + where.sql() + " ORDER BY ended_us, rowid LIMIT ?"
	var (
		afterUS    int64 = math.MinInt64
		afterRowID int64
		skipped    int
		firstErr   error
	)
	for {
		page, more, err := s.endedQuery(ctx, q, endedBatch, append(where.args, afterUS, afterRowID, endedBatch+1)...)
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
		return fmt.Errorf("skipped %s: %w", notifier.Plural(int64(skipped), "archived notice"), firstErr)
	}
	return nil
}

// CountEnded returns how many archived notices match f, counting those whose
// payload does not decode.
func (s *SQLite) CountEnded(ctx context.Context, f notifier.NoticeFilter) (int, error) {
	if s.version < archiveVersion {
		return 0, nil
	}
	where := noticesWhere(f)
	q := "SELECT count(*) FROM notices" + where.sql()
	var n int
	if err := s.r.QueryRowContext(ctx, q, where.args...).Scan(&n); err != nil {
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
