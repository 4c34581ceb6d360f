package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// Listing, counting and status read what they show: a payload's header
// line, never its body (up to notifier.MaxBodyBytes each), and a page of
// the index at a time.
const (
	// headChunk is the first range a header read asks for: a usual header
	// (URL, schedule, stamp, a few headers and secrets) fits in it, and
	// little of the body comes along.
	headChunk = 1 << 10
	// maxHead bounds a header read. A valid header is far smaller (its URL
	// and headers are bounded by notifier.MaxURLLen and MaxHeaderBytes,
	// even JSON-escaped); a payload with no newline within it is corrupt.
	maxHead = 1 << 20
	// ListPage is how many notices EachPending reads per step: one ZSCAN
	// page, then one pipeline of header reads.
	ListPage = 100
)

// readHeads reads the header line of each notice's payload, from the
// payload table or, for the notices it does not hold, their own keys (see
// readKeyHeads). heads[i] is nil if ids[i] has no payload.
func (r *Redis) readHeads(ctx context.Context, ids []string) ([][]byte, error) {
	heads, _, err := r.readRecords(ctx, ids, maxHead)
	if err != nil {
		return nil, err
	}
	var keys []string
	var idx []int
	for i, h := range heads {
		if h == nil {
			keys = append(keys, r.keys.Payload(ids[i]))
			idx = append(idx, i)
		}
	}
	if len(keys) == 0 {
		return heads, nil
	}
	own, err := r.readKeyHeads(ctx, keys)
	if err != nil {
		return nil, err
	}
	for j, i := range idx {
		heads[i] = own[j]
	}
	return heads, nil
}

// readKeyHeads reads the header line of each payload key, pipelined, without
// the body: GETRANGE of the first headChunk bytes and, for the rare longer
// header, further ranges (each four times what was read so far) until its
// end (see headLen). heads[i] is keys[i]'s header; the whole value for a
// tombstone; nil if the key does not exist; an incomplete header for a
// corrupt payload. A header read in several ranges may mix two values if
// its notice ended and was enqueued again in between: it then fails to
// decode, or its stamp does not match the index entry read before it.
func (r *Redis) readKeyHeads(ctx context.Context, keys []string) ([][]byte, error) {
	heads := make([][]byte, len(keys))
	todo := make([]int, len(keys))
	for i := range todo {
		todo[i] = i
	}
	for len(todo) > 0 {
		pipe := r.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(todo))
		asked := make([]int, len(todo))
		for j, i := range todo {
			from := len(heads[i])
			asked[j] = headChunk
			if from > 0 {
				asked[j] = min(4*from, maxHead-from)
			}
			cmds[j] = pipe.GetRange(ctx, keys[i], int64(from), int64(from+asked[j]-1))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read %d notice headers: %w", len(todo), err)
		}
		more := todo[:0]
		for j, i := range todo {
			b, _ := cmds[j].Bytes()
			heads[i] = append(heads[i], b...)
			if end, ok := headLen(heads[i]); ok {
				heads[i] = heads[i][:end]
				continue
			}
			if len(b) == asked[j] && len(heads[i]) < maxHead && !isTombstone(heads[i]) {
				more = append(more, i)
			}
		}
		todo = more
	}
	for i, h := range heads {
		if len(h) == 0 {
			heads[i] = nil
		}
	}
	return heads, nil
}

// readHead is readHeads for one payload.
func (r *Redis) readHead(ctx context.Context, id string) ([]byte, error) {
	heads, err := r.readHeads(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	return heads[0], nil
}

// EachPending calls fn for every pending notice (parked ones included, with
// Parked set), in no particular order, until fn returns an error, which it
// returns: a caller that has what it shows stops the scan that way. Each
// notice comes without its body (Notice.Body is nil). The index is read
// ListPage entries at a time, and only their headers, so memory stays
// bounded however many notices wait and however large their bodies.
// Entries whose payload is gone or unreadable are skipped.
func (r *Redis) EachPending(ctx context.Context, fn func(notifier.PendingNotice) error) error {
	scan := func(key string, parked bool) error {
		var cursor uint64
		for {
			ms, next, err := r.rdb.ZScan(ctx, key, cursor, "", ListPage).Result()
			if err != nil {
				return fmt.Errorf("scan %s: %w", key, err)
			}
			// A small set comes whole in one reply: read it a page at a time.
			for len(ms) > 0 {
				page := ms[:min(len(ms), 2*ListPage)]
				ms = ms[len(page):]
				if err := r.pendingPage(ctx, page, parked, fn); err != nil {
					return err
				}
			}
			cursor = next
			if cursor == 0 {
				return nil
			}
		}
	}
	for s := range r.keys.ShardCount() {
		if err := scan(r.keys.DueShard(s), false); err != nil {
			return err
		}
	}
	if err := r.eachFar(ctx, fn); err != nil {
		return err
	}
	names, err := r.parkingPartners(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		for s := range r.keys.ShardCount() {
			if err := scan(r.keys.ParkedIn(s, name), true); err != nil {
				return err
			}
		}
	}
	return nil
}

// pendingPage reads the headers of one page of ZSCAN's member, score pairs
// and calls fn for each notice still pending.
func (r *Redis) pendingPage(ctx context.Context, ms []string, parked bool, fn func(notifier.PendingNotice) error) error {
	var ts []notifier.Trigger
	var scores, keys []string
	for i := 0; i+1 < len(ms); i += 2 {
		t, err := r.keys.ParseMember(ms[i])
		if err != nil {
			continue
		}
		ts = append(ts, t)
		scores = append(scores, ms[i+1])
		keys = append(keys, t.ID)
	}
	if len(ts) == 0 {
		return nil
	}
	heads, err := r.readHeads(ctx, keys)
	if err != nil {
		return fmt.Errorf("read pending notices: %w", err)
	}
	for i, t := range ts {
		if heads[i] == nil || isTombstone(heads[i]) {
			continue
		}
		n, err := decodeHeader(t.ID, heads[i])
		if err != nil || !n.Stamp.Equal(t.Stamp) {
			continue
		}
		due, _ := n.Schedule.Due(n.Stamp, t.N)
		if ms, err := strconv.ParseFloat(scores[i], 64); err == nil && !parked {
			if armed := time.UnixMilli(int64(ms)); armed.After(due) {
				due = armed
			}
		}
		if err := fn(notifier.PendingNotice{Notice: n, N: t.N, Due: due, Parked: parked}); err != nil {
			return err
		}
	}
	return nil
}

// Pending returns the pending state of notice id, its body included, or an
// error wrapping notifier.ErrNotFound if nothing is pending for it. It reads
// the whole payload: what only shows the state uses PendingHeader.
func (r *Redis) Pending(ctx context.Context, id string) (notifier.Pending, error) {
	p, err := r.readPayload(ctx, id)
	if errors.Is(err, redis.Nil) {
		return notifier.Pending{}, fmt.Errorf("notice %s: %w", id, notifier.ErrNotFound)
	}
	if err != nil {
		return notifier.Pending{}, fmt.Errorf("read notice %s: %w", id, err)
	}
	if isTombstone(p) {
		return notifier.Pending{}, fmt.Errorf("notice %s: %s: %w", id, p[1:], notifier.ErrNotFound)
	}
	n, err := decodePayload(id, p)
	if err != nil {
		return notifier.Pending{}, err
	}
	return r.pendingAttempt(ctx, n)
}

// PendingHeader is Pending without the body (Notice.Body is nil): it reads
// only the payload's header line, whatever the body's size.
func (r *Redis) PendingHeader(ctx context.Context, id string) (notifier.Pending, error) {
	head, err := r.readHead(ctx, id)
	if err != nil {
		return notifier.Pending{}, fmt.Errorf("read notice %s: %w", id, err)
	}
	if head == nil {
		return notifier.Pending{}, fmt.Errorf("notice %s: %w", id, notifier.ErrNotFound)
	}
	if isTombstone(head) {
		return notifier.Pending{}, fmt.Errorf("notice %s: %s: %w", id, head[1:], notifier.ErrNotFound)
	}
	n, err := decodeHeader(id, head)
	if err != nil {
		return notifier.Pending{}, err
	}
	return r.pendingAttempt(ctx, n)
}

// pendingAttempt finds the pending attempt of stored notice n.
func (r *Redis) pendingAttempt(ctx context.Context, n notifier.Notice) (notifier.Pending, error) {
	id := n.ID
	// The payload does not record which attempt is pending (so it never has
	// to be rewritten); the candidates are few, so ask the index for each.
	pipe := r.rdb.Pipeline()
	scores := make([]*redis.FloatCmd, len(n.Schedule))
	for k := range scores {
		scores[k] = pipe.ZScore(ctx, r.keys.DueOf(id), r.keys.Member(notifier.Trigger{ID: id, Stamp: n.Stamp, N: k + 1}))
	}
	lease := pipe.Exists(ctx, r.keys.Lease(id))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return notifier.Pending{}, fmt.Errorf("read notice %s: %w", id, err)
	}
	for k, c := range scores {
		if c.Err() == nil {
			due, _ := n.Schedule.Due(n.Stamp, k+1)
			inFlight := lease.Val() == 1
			// The score is when the attempt was armed to run, which is
			// later than its slot after Retry-After or catch-up (while in
			// flight it is the lease's end instead).
			if armed := time.UnixMilli(int64(c.Val())); !inFlight && armed.After(due) {
				due = armed
			}
			return notifier.Pending{Notice: n, N: k + 1, Due: due, InFlight: inFlight}, nil
		}
	}
	if _, fars, err := r.readRecords(ctx, []string{id}, 1); err != nil {
		return notifier.Pending{}, fmt.Errorf("read notice %s: %w", id, err)
	} else if f := fars[0]; f.N > 0 {
		return notifier.Pending{Notice: n, N: f.N, Due: f.Due}, nil
	}
	switch p, ok, err := r.parkedAttempt(ctx, n); {
	case err != nil:
		return notifier.Pending{}, fmt.Errorf("read notice %s: %w", id, err)
	case ok:
		return p, nil
	}
	return notifier.Pending{}, fmt.Errorf("notice %s: payload without a pending attempt: %w", id, notifier.ErrNotFound)
}
