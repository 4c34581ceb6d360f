package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// DefaultPrefix starts every key notifier writes.
const DefaultPrefix = "noticeId"

// ErrForeignKey is wrapped by ParseTrigger for a key that is not a trigger
// key of this prefix: another application's key, or a malformed one.
var ErrForeignKey = errors.New("not a trigger key")

// Keys names every Redis key of one prefix P:
//
//	P_<id>_<stamp>_<n>  trigger: the integer 1, with a TTL that ends when attempt n is due;
//	                    its expired event is what wakes a delivery
//	P:p:<id>            payload: the notice (JSON header line, '\n', raw body); no TTL.
//	                    Once the notice is delivered or cancelled it becomes a
//	                    tombstone ("!delivered", "!cancelled") with the dedup window
//	                    as TTL, so enqueue can refuse an id that was already
//	                    delivered; a given-up notice's payload is deleted (the
//	                    archive in SQLite keeps it)
//	P:due               due index: sorted set, member <id>_<stamp>_<n> (a trigger key
//	                    without "P_"), score = due time in Unix ms, or the lease's end
//	                    while the attempt is claimed
//	P:l:<id>            lease: claim token of the worker making the notice's attempt, PX lease
//	P:schedule          the default schedule of the serve that last started, read by enqueue
//	P:urlpolicy         JSON address policy of that serve (SSRF guard), applied at enqueue
//	P:wake              pubsub channel: an attempt was armed already due, wake up now
//	P:wakeflag          set for 2 ms after a wake message, so a burst sends one
//	P:parked:<partner>  sorted set of due-index members parked while their partner is
//	                    paused (score: when parked); resume re-arms them all
//	P:partner:<name>    hash: paused (1/0), reason, since (Unix ms), fails (failed
//	                    attempts in a row), shared by every serve
//	P:partners          hash: partner name -> JSON summary of its config (no secrets),
//	                    published by serve for enqueue and `partner list`
//	P:canary:<instance> liveness probe of one serve's subscription: expires at once and
//	                    must come back as an expired event
//
// A notice has at most one pending attempt, so it has one due-index member
// and at most one trigger key at a time.
type Keys struct {
	Prefix string
}

func (k Keys) prefix() string {
	if k.Prefix == "" {
		return DefaultPrefix
	}
	return k.Prefix
}

// Member is the due-index member of t: its trigger key without the prefix.
func (k Keys) Member(t notifier.Trigger) string {
	return t.ID + "_" + strconv.FormatInt(t.Stamp.UnixMilli(), 10) + "_" + strconv.Itoa(t.N)
}

// Trigger is the trigger key of t: P_<id>_<stamp>_<n>.
func (k Keys) Trigger(t notifier.Trigger) string { return k.prefix() + "_" + k.Member(t) }

// Payload is the key holding notice id's payload.
func (k Keys) Payload(id string) string { return k.prefix() + ":p:" + id }

// Lease is the key holding the claim on notice id's pending attempt.
func (k Keys) Lease(id string) string { return k.prefix() + ":l:" + id }

// Due is the due index.
func (k Keys) Due() string { return k.prefix() + ":due" }

// DefaultSchedule is the key where serve publishes its default schedule.
func (k Keys) DefaultSchedule() string { return k.prefix() + ":schedule" }

// Wake is the pubsub channel on which scripts hint that an attempt was armed
// already due.
func (k Keys) Wake() string { return k.prefix() + ":wake" }

// WakeFlag rate-limits wake messages to one per 2 ms.
func (k Keys) WakeFlag() string { return k.prefix() + ":wakeflag" }

// URLPolicy is where serve publishes its address policy.
func (k Keys) URLPolicy() string { return k.prefix() + ":urlpolicy" }

// Parked is the set of attempts parked while partner is paused.
func (k Keys) Parked(partner string) string { return k.prefix() + ":parked:" + partner }

// Partner is the hash holding partner name's shared state.
func (k Keys) Partner(name string) string { return k.prefix() + ":partner:" + name }

// Partners is the hash of published partner configurations.
func (k Keys) Partners() string { return k.prefix() + ":partners" }

// Canary is the liveness probe key of one subscriber.
func (k Keys) Canary(instance string) string { return k.prefix() + ":canary:" + instance }

// ParseTrigger reads a trigger key. It parses from the right, so ids may
// contain '_'. Any other key yields an error wrapping ErrForeignKey.
func (k Keys) ParseTrigger(key string) (notifier.Trigger, error) {
	p := k.prefix() + "_"
	if !strings.HasPrefix(key, p) {
		return notifier.Trigger{}, fmt.Errorf("key %q: %w", key, ErrForeignKey)
	}
	return k.ParseMember(key[len(p):])
}

// ParseMember reads a due-index member <id>_<stamp>_<n>.
func (k Keys) ParseMember(m string) (notifier.Trigger, error) {
	bad := func(why string) (notifier.Trigger, error) {
		return notifier.Trigger{}, fmt.Errorf("key %q: %s: %w", m, why, ErrForeignKey)
	}
	i := strings.LastIndexByte(m, '_')
	if i < 0 {
		return bad("no attempt number")
	}
	n, ok := smallUint(m[i+1:], 3)
	if !ok || n < 1 || n > backoff.MaxAttempts {
		return bad("bad attempt number")
	}
	rest := m[:i]
	j := strings.LastIndexByte(rest, '_')
	if j < 0 {
		return bad("no stamp")
	}
	stamp, ok := smallUint(rest[j+1:], 15)
	if !ok || stamp == 0 {
		return bad("bad stamp")
	}
	id := rest[:j]
	if notifier.ValidateID(id) != nil {
		return bad("bad id")
	}
	return notifier.Trigger{ID: id, Stamp: time.UnixMilli(stamp), N: int(n)}, nil
}

// smallUint parses a plain decimal of at most maxDigits digits (no sign, no
// spaces, no leading zero), so foreign keys never overflow or panic, and a
// parsed key prints back as the same key.
func smallUint(s string, maxDigits int) (int64, bool) {
	if s == "" || len(s) > maxDigits || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}
