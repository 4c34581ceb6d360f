package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// DefaultDedupWindow is how long an ended notice's id is remembered.
const DefaultDedupWindow = 24 * time.Hour

func (r *Redis) dedupWindow() time.Duration {
	switch {
	case r.DedupWindow < 0:
		return 0
	case r.DedupWindow == 0:
		return DefaultDedupWindow
	}
	return r.DedupWindow
}

func isTombstone(p []byte) bool { return len(p) > 0 && p[0] == '!' }

// State says what Redis knows of notice id: notifier.StatePending (or
// StateParked) while it waits, StateDelivered or StateCancelled for the
// dedup window after it was delivered or cancelled, and an
// error wrapping notifier.ErrNotFound when it knows nothing. It reads the
// payload's header, never its body.
func (r *Redis) State(ctx context.Context, id string) (notifier.State, error) {
	p, err := r.readHead(ctx, id)
	if err != nil {
		return "", fmt.Errorf("read notice %s: %w", id, err)
	}
	if p == nil {
		d, err := r.Delivered(ctx, id)
		if err != nil {
			return "", err
		}
		if d {
			return notifier.StateDelivered, nil
		}
		return "", fmt.Errorf("notice %s: %w", id, notifier.ErrNotFound)
	}
	if isTombstone(p) {
		return notifier.State(p[1:]), nil
	}
	n, err := decodeHeader(id, p)
	if err != nil {
		return "", err
	}
	parked, err := r.parkedSet(ctx, id, &n)
	if err != nil {
		return "", err
	}
	if parked != "" {
		return notifier.StateParked, nil
	}
	return notifier.StatePending, nil
}

// Cancel ends pending notice id without sending it again. It wraps
// notifier.ErrNotFound if Redis knows no such notice and notifier.ErrEnded
// if it already ended (the error names how).
func (r *Redis) Cancel(ctx context.Context, id string) error {
	_, err := r.CancelInFlight(ctx, id)
	return err
}

// CancelInFlight is Cancel that also reports whether an attempt was in
// flight: its POST may still reach the partner, but nothing follows it.
func (r *Redis) CancelInFlight(ctx context.Context, id string) (inFlight bool, err error) {
	for try := 0; try < 5; try++ {
		// The header is enough: the script checks that the payload still
		// starts with it, and the body is never read.
		p, err := r.readHead(ctx, id)
		if err != nil {
			return false, fmt.Errorf("cancel %s: %w", id, err)
		}
		if p == nil {
			if d, err := r.Delivered(ctx, id); err != nil {
				return false, fmt.Errorf("cancel %s: %w", id, err)
			} else if d {
				return false, fmt.Errorf("cancel %s: %s: %w", id, notifier.StateDelivered, notifier.ErrEnded)
			}
			return false, fmt.Errorf("cancel %s: %w", id, notifier.ErrNotFound)
		}
		if isTombstone(p) {
			return false, fmt.Errorf("cancel %s: %s: %w", id, p[1:], notifier.ErrEnded)
		}
		n, err := decodeHeader(id, p)
		if err != nil {
			// Unreadable: it can never be sent, so cancelling removes it.
			n = notifier.Notice{ID: id}
		}
		parked, err := r.parkedSet(ctx, id, &n)
		if err != nil {
			return false, fmt.Errorf("cancel %s: %w", id, err)
		}
		if parked == "" {
			parked = r.keys.ParkedOf(id, n.Partner)
		}
		keys := []string{r.keys.Payload(id), r.keys.DueOf(id), r.keys.Lease(id), parked, r.keys.Records(id)}
		args := []any{p, r.dedupWindow().Milliseconds(), id}
		for k := 1; k <= len(n.Schedule); k++ {
			t := notifier.Trigger{ID: id, Stamp: n.Stamp, N: k}
			keys = append(keys, r.keys.Trigger(t))
			args = append(args, r.keys.Member(t))
		}
		cmds, err := r.evalPipelined(ctx, []scriptCall{{cancelScript, keys, args}})
		if err != nil {
			return false, fmt.Errorf("cancel %s: %w", id, err)
		}
		v, err := cmds[0].Int()
		if err != nil {
			return false, fmt.Errorf("cancel %s: %w", id, err)
		}
		switch v {
		case 1, 2:
			return v == 2, nil
		case 0:
			return false, fmt.Errorf("cancel %s: %w", id, notifier.ErrEnded)
		}
	}
	return false, fmt.Errorf("cancel %s: the notice keeps changing; try again", id)
}

// Park implements notifier.Pauser: it moves job's attempt into its paused
// partner's parked set. False if the claim was lost.
func (r *Redis) Park(ctx context.Context, job notifier.Job, partner string) (bool, error) {
	t := r.trigger(job)
	cmds, err := r.evalPipelined(ctx, []scriptCall{{parkScript,
		[]string{r.keys.DueOf(t.ID), r.keys.Lease(t.ID), r.keys.ParkedOf(t.ID, partner), r.keys.ParkedNames(r.keys.ShardOf(t.ID))},
		[]any{r.keys.Member(t), job.Token, r.Now().UnixMilli(), partner}}})
	if err != nil {
		return false, fmt.Errorf("park %s: %w", r.keys.Trigger(t), err)
	}
	v, err := cmds[0].Int()
	if err != nil {
		return false, fmt.Errorf("park %s: %w", r.keys.Trigger(t), err)
	}
	return v == 1, nil
}

// Pause marks partner name paused: serve parks its notices instead of
// sending them until Resume.
func (r *Redis) Pause(ctx context.Context, name, reason string) error {
	err := r.rdb.HSet(ctx, r.keys.Partner(name), "paused", 1, "reason", reason, "since", r.Now().UnixMilli()).Err()
	if err != nil {
		return fmt.Errorf("pause partner %s: %w", name, err)
	}
	r.partnersChanged(ctx)
	return nil
}

// partnersChanged tells every serve to reread partner states now rather
// than at its next poll (a second at most).
func (r *Redis) partnersChanged(ctx context.Context) {
	_ = r.rdb.Publish(ctx, r.keys.Wake(), wakePartners).Err() // best effort: the poll catches up
}

// wakePartners is the wake-channel message that partner states changed.
const wakePartners = "partners"

// Resume un-pauses partner name and re-arms every attempt parked meanwhile,
// due now. It returns how many were re-armed.
func (r *Redis) Resume(ctx context.Context, name string) (int, error) {
	if err := r.rdb.HSet(ctx, r.keys.Partner(name), "paused", 0, "reason", "", "fails", 0, "since", r.Now().UnixMilli()).Err(); err != nil {
		return 0, fmt.Errorf("resume partner %s: %w", name, err)
	}
	n, err := r.Unpark(ctx, name)
	r.partnersChanged(ctx)
	return n, err
}

// Unpark implements notifier.Pauser: it re-arms every attempt parked for
// partner name, due now, and returns how many.
func (r *Redis) Unpark(ctx context.Context, name string) (int, error) {
	// Only what was parked by now: attempts parked again meanwhile (the
	// partner paused once more) stay parked.
	now := r.Now().UnixMilli()
	total := 0
	for s := range r.keys.ShardCount() {
		n, err := r.unparkShard(ctx, s, name, now)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (r *Redis) unparkShard(ctx context.Context, s int, name string, now int64) (int, error) {
	total := 0
	for {
		// Batches keep each script short: Redis serves nobody else while
		// one runs.
		cmds, err := r.evalPipelined(ctx, []scriptCall{{unparkScript,
			[]string{r.keys.ParkedIn(s, name), r.keys.DueShard(s), r.keys.ParkedNames(s)},
			[]any{r.keys.TriggerPrefix(), now, 1000, name}}})
		if err != nil {
			return total, fmt.Errorf("resume partner %s: %w", name, err)
		}
		v, err := cmds[0].Int()
		if err != nil {
			return total, fmt.Errorf("resume partner %s: %w", name, err)
		}
		total += int(v)
		if v == 0 {
			return total, nil
		}
	}
}

// PartnerStates reads the state of each named partner.
func (r *Redis) PartnerStates(ctx context.Context, names []string) (map[string]notifier.PartnerState, error) {
	pipe := r.rdb.Pipeline()
	hs := make([]*redis.MapStringStringCmd, len(names))
	cs := make([]*redis.IntCmd, len(names)*r.keys.ShardCount())
	for i, n := range names {
		hs[i] = pipe.HGetAll(ctx, r.keys.Partner(n))
		for s := range r.keys.ShardCount() {
			cs[i*r.keys.ShardCount()+s] = pipe.ZCard(ctx, r.keys.ParkedIn(s, n))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read partner states: %w", err)
	}
	out := make(map[string]notifier.PartnerState, len(names))
	for i, n := range names {
		h := hs[i].Val()
		st := notifier.PartnerState{Paused: h["paused"] == "1", Reason: h["reason"]}
		for s := range r.keys.ShardCount() {
			st.Parked += cs[i*r.keys.ShardCount()+s].Val()
		}
		if ms, err := strconv.ParseInt(h["since"], 10, 64); err == nil && ms > 0 {
			st.Since = time.UnixMilli(ms)
		}
		st.Fails, _ = strconv.Atoi(h["fails"])
		out[n] = st
	}
	return out, nil
}

// Paused implements notifier.Pauser.
func (r *Redis) Paused(ctx context.Context, names []string) (map[string]notifier.PauseState, error) {
	states, err := r.PartnerStates(ctx, names)
	if err != nil {
		return nil, err
	}
	out := make(map[string]notifier.PauseState, len(states))
	for n, st := range states {
		out[n] = notifier.PauseState{Paused: st.Paused, Parked: st.Parked}
	}
	return out, nil
}

// PartnerResult implements notifier.Pauser: it counts partner name's
// failed attempts in a row and pauses it at threshold failures (0: never),
// or at once when gone is set. It reports whether this call paused it.
func (r *Redis) PartnerResult(ctx context.Context, name string, ok bool, threshold int, gone string) (bool, error) {
	okArg, goneArg := "0", "0"
	if ok {
		okArg = "1"
	}
	if gone != "" {
		goneArg = "1"
	}
	cmds, err := r.evalPipelined(ctx, []scriptCall{{partnerResultScript,
		[]string{r.keys.Partner(name)},
		[]any{okArg, threshold, r.Now().UnixMilli(), goneArg, gone}}})
	if err != nil {
		return false, fmt.Errorf("partner %s result: %w", name, err)
	}
	v, err := cmds[0].Int()
	if err != nil {
		return false, fmt.Errorf("partner %s result: %w", name, err)
	}
	if v == 1 {
		r.partnersChanged(ctx)
	}
	return v == 1, nil
}

// PublishPartners replaces the published partner summaries (name -> JSON)
// in one transaction, so enqueue and `partner list` see serve's config.
func (r *Redis) PublishPartners(ctx context.Context, summaries map[string]string) error {
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.keys.Partners())
		if len(summaries) > 0 {
			p.HSet(ctx, r.keys.Partners(), summaries)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish partners: %w", err)
	}
	return nil
}

// PublishedPartners returns what serve published with PublishPartners.
func (r *Redis) PublishedPartners(ctx context.Context) (map[string]string, error) {
	m, err := r.rdb.HGetAll(ctx, r.keys.Partners()).Result()
	if err != nil {
		return nil, fmt.Errorf("read partners: %w", err)
	}
	return m, nil
}

// parkedSet returns the parked set holding notice n's attempt, "" if none.
func (r *Redis) parkedSet(ctx context.Context, id string, n *notifier.Notice) (string, error) {
	partner, _, err := r.findParked(ctx, id, n)
	if err != nil || partner == "" {
		return "", err
	}
	return r.keys.ParkedOf(id, partner), nil
}

// PendingCount counts pending notices: those in the due index (in flight
// included), the far ones, and those parked for the named partners.
func (r *Redis) PendingCount(ctx context.Context, partners []string) (int64, error) {
	pipe := r.rdb.Pipeline()
	var cmds []*redis.IntCmd
	for s := range r.keys.ShardCount() {
		cmds = append(cmds, pipe.ZCard(ctx, r.keys.DueShard(s)))
		for _, p := range partners {
			cmds = append(cmds, pipe.ZCard(ctx, r.keys.ParkedIn(s, p)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("count pending notices: %w", err)
	}
	n, err := r.farCount(ctx)
	if err != nil {
		return 0, err
	}
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// SetURLPolicy publishes serve's address policy for enqueue to apply.
func (r *Redis) SetURLPolicy(ctx context.Context, p notifier.PolicySummary) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("publish url policy: %w", err)
	}
	if err := r.rdb.Set(ctx, r.keys.URLPolicy(), b, 0).Err(); err != nil {
		return fmt.Errorf("publish url policy: %w", err)
	}
	return nil
}

// urlPolicy reads the published address policy; nil if no serve published
// one (serve's guard still refuses at dial time).
func (r *Redis) urlPolicy(ctx context.Context) (*notifier.URLPolicy, error) {
	p, _, err := r.policy(ctx)
	return p, err
}

// policy reads the published policy: the URL policy and the body limit (0:
// MaxBodyBytes). Both are nil/0 if no serve published one.
func (r *Redis) policy(ctx context.Context) (*notifier.URLPolicy, int, error) {
	b, err := r.rdb.Get(ctx, r.keys.URLPolicy()).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read url policy: %w", err)
	}
	var s notifier.PolicySummary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, 0, fmt.Errorf("url policy in %s: %w", r.keys.URLPolicy(), err)
	}
	p, err := s.Policy()
	if err != nil {
		return nil, 0, fmt.Errorf("url policy in %s: %w", r.keys.URLPolicy(), err)
	}
	return &p, s.MaxBody, nil
}
