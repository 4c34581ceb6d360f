package store

import (
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
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
//	P:b                 payload table: meta hash of the linear-hashing table that holds
//	                    pending notices' payloads (see records.go), f, how many of
//	                    them are far (see far.go), and L once P:r is found gone
//	P:b:<b>             payload bucket b: list of pairs, notice id then payload (header,
//	                    raw body), behind a 9-byte prefix (attempt, due time) while the
//	                    attempt is far; no TTL. A payload leaves it when the notice is
//	                    delivered or gives up (the archive in SQLite keeps it) or is
//	                    cancelled
//	P:b:t               bucket times: sorted set, bucket number -> a time no later than
//	                    its earliest far attempt, read by promoteScript
//	P:r  P:r:<b>        the previous release's payload table (hash buckets): read and
//	                    emptied, never added to
//	P:p:<id>            payload of its own: a payload too large for a bucket, or one an
//	                    earlier release stored; a cancelled notice's becomes the
//	                    tombstone "!cancelled" for the dedup window
//	P:dg                dedup directory: hash of the live generations of
//	                    delivered ids, "<generation ms>.<g>" -> their expiry (Unix ms),
//	                    and "#<generation ms>.<g>" -> how many ids they hold
//	P:d:<gen>:<route>   dedup set: intset of 64-bit digests of ids delivered in
//	                    generation gen, at trie node route (1 to 16 hex digits);
//	                    expires with its generation (see dedupLua)
//	P:due               due index: sorted set, member <id>_<stamp>_<n> (a trigger key
//	                    without "P_"), score = due time in Unix ms, or the lease's end
//	                    while the attempt is claimed
//	P:l:<id>            lease: claim token of the worker making the notice's attempt, PX lease
//	P:ew:<w>:<s>        receipts of the enqueue calls of receipt window w (one second), slot s:
//	                    hash, call token -> its answers (see enqueueScript), for a minute after its last call
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
//	P:attempts          capped stream of every serve's attempts (serve --fleet-log),
//	                    followed by `notifier tail --fleet`
//	P:canary:<instance> liveness probe of one serve's subscription: expires at once and
//	                    must come back as an expired event
//
// and, named by Redis rather than by notifier (not prefixed):
//
//	__keyevent@<db>__:expired  the channel of database db's expired events, whose
//	                           messages are the expired keys' names
//
// A notice has at most one pending attempt, so it has one due-index member
// and at most one trigger key at a time.
//
// On a Redis Cluster (Shards > 1) a script may only touch keys of one hash
// slot, and one node must not hold the whole due index. Each notice then
// belongs to shard s = crc32(id) mod Shards, and every key of the notice
// and of its shard carries the shard's hash tag {T} (T from ShardTag):
//
//	P_{T}<id>_<stamp>_<n>  trigger (the tag leads, so braces in an id never
//	                       become the hash tag)
//	P:{T}:b  P:{T}:b:<b>  P:{T}:b:t  P:{T}:r  P:{T}:r:<b>  P:{T}:p:<id>  P:{T}:l:<id>  P:{T}:ew:<w>:<s>  P:{T}:due
//	P:{T}:wakeflag  P:{T}:parked:<partner>
//	P:{T}:dg  P:{T}:d:<gen>:<route>
//
// and due-index members are the trigger keys without "P_", tag included.
// The tags are chosen so the shards' slots spread evenly over the slot
// range, and so over the masters. Keys of no notice (schedule, partners,
// url policy) keep their names.
type Keys struct {
	Prefix string
	// Shards is the number of due-index shards; 0 or 1 is the single-node
	// layout, without hash tags.
	Shards int
}

// ClusterShards is the shard count in cluster mode: enough that three to
// a dozen masters each get several, few enough that the waker's and the
// sweep's per-shard queries stay cheap.
const ClusterShards = 32

func (k Keys) sharded() bool { return k.Shards > 1 }

// ShardCount is the number of due-index shards (1 on a single node).
func (k Keys) ShardCount() int { return max(k.Shards, 1) }

// ShardOf returns the shard of notice id.
func (k Keys) ShardOf(id string) int {
	if !k.sharded() {
		return 0
	}
	return int(crc32.ChecksumIEEE([]byte(id)) % uint32(k.Shards))
}

// scope is the prefix of shard s's keys: "P" or "P:{T}".
func (k Keys) scope(s int) string {
	if !k.sharded() {
		return k.prefix()
	}
	return k.prefix() + ":{" + ShardTag(s, k.Shards) + "}"
}

// tag is the hash tag that leads shard s's trigger keys and members.
func (k Keys) tag(s int) string {
	if !k.sharded() {
		return ""
	}
	return "{" + ShardTag(s, k.Shards) + "}"
}

func (k Keys) prefix() string {
	if k.Prefix == "" {
		return DefaultPrefix
	}
	return k.Prefix
}

// Member is the due-index member of t: its trigger key without the prefix.
func (k Keys) Member(t notifier.Trigger) string {
	return k.tag(k.ShardOf(t.ID)) + t.ID + "_" + strconv.FormatInt(t.Stamp.UnixMilli(), 10) + "_" + strconv.Itoa(t.N)
}

// Trigger is the trigger key of t: P_<id>_<stamp>_<n>.
func (k Keys) Trigger(t notifier.Trigger) string { return k.TriggerPrefix() + k.Member(t) }

// TriggerPrefix starts every trigger key: "P_". A trigger key is this
// followed by its due-index member, which is how unparkScript names the
// trigger keys of the members it re-arms: its caller passes TriggerPrefix
// as ARGV[1].
func (k Keys) TriggerPrefix() string { return k.prefix() + "_" }

// Payload is the key holding notice id's payload.
func (k Keys) Payload(id string) string { return k.scope(k.ShardOf(id)) + ":p:" + id }

// Records is the payload table (its meta hash) of notice id's shard; its
// buckets are this name followed by ":<b>" (see records.go).
func (k Keys) Records(id string) string { return k.RecordsShard(k.ShardOf(id)) }

// RecordsShard is the payload table of shard s.
func (k Keys) RecordsShard(s int) string { return k.scope(s) + ":b" }

// Receipts is the hash where an enqueue call whose first notice is id,
// made in receipt window w (its start in Unix ms divided by the window's
// length), leaves its answers: field its token, value one code per notice
// (see enqueueScript), for a minute, so the same call sent again after its
// reply was lost answers as the lost reply did, knowing which notices it
// stored (however they have ended since). The calls
// of a window share receiptSlots hashes (by FNV-1a of the id) rather than
// a key each, which
// keeps a burst of enqueues from growing Redis's key tables for good (they
// never shrink while a tenth of the keys remain); several hashes rather
// than one keep each small, since Redis frees an expired hash in one go
// (a hash of 160,000 receipts took 60 ms, all of Redis waiting).
func (k Keys) Receipts(id string, w int64) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return k.scope(k.ShardOf(id)) + ":ew:" + strconv.FormatInt(w, 10) + ":" + strconv.Itoa(int(h.Sum32()%receiptSlots))
}

// receiptSlots is how many receipt hashes a window has: at 50,000 enqueues
// a second (calls of up to 64 notices), a few receipts each.
const receiptSlots = 256

// DedupDir is the directory of the dedup generations of notice id's shard.
func (k Keys) DedupDir(id string) string { return k.DedupDirShard(k.ShardOf(id)) }

// DedupDirShard is the dedup directory of shard s.
func (k Keys) DedupDirShard(s int) string { return k.scope(s) + ":dg" }

// DedupNodes starts the names of the dedup sets of notice id's shard; the
// scripts complete them with a generation and a route (see dedupLua).
func (k Keys) DedupNodes(id string) string { return k.scope(k.ShardOf(id)) + ":d:" }

// Lease is the key holding the claim on notice id's pending attempt.
func (k Keys) Lease(id string) string { return k.scope(k.ShardOf(id)) + ":l:" + id }

// Due is the due index.
// On a cluster it is shard 0's; see DueOf and DueShard.
func (k Keys) Due() string { return k.DueShard(0) }

// DueShard is the due index of shard s.
func (k Keys) DueShard(s int) string { return k.scope(s) + ":due" }

// DueOf is the due index holding notice id's attempts.
func (k Keys) DueOf(id string) string { return k.DueShard(k.ShardOf(id)) }

// DefaultSchedule is the key where serve publishes its default schedule.
func (k Keys) DefaultSchedule() string { return k.prefix() + ":schedule" }

// Wake is the pubsub channel on which scripts hint that an attempt was armed
// already due.
func (k Keys) Wake() string { return k.prefix() + ":wake" }

// WakeFlag rate-limits wake messages to one per 2 ms.
func (k Keys) WakeFlag() string { return k.WakeFlagOf("") }

// WakeFlagOf is the wake flag in notice id's shard (scripts touch it with
// the notice's other keys).
func (k Keys) WakeFlagOf(id string) string { return k.scope(k.ShardOf(id)) + ":wakeflag" }

// URLPolicy is where serve publishes its address policy.
func (k Keys) URLPolicy() string { return k.prefix() + ":urlpolicy" }

// Parked is the set of attempts parked while partner is paused.
// On a cluster it is shard 0's; see ParkedIn.
func (k Keys) Parked(partner string) string { return k.ParkedIn(0, partner) }

// ParkedIn is partner's parked set in shard s.
func (k Keys) ParkedIn(s int, partner string) string { return k.scope(s) + ":parked:" + partner }

// ParkedOf is partner's parked set in notice id's shard.
func (k Keys) ParkedOf(id, partner string) string { return k.ParkedIn(k.ShardOf(id), partner) }

// ParkedNames is the set of partner names with attempts parked in shard s:
// how parked sets are found again after their partner left the config.
func (k Keys) ParkedNames(s int) string { return k.scope(s) + ":parkednames" }

// Partner is the hash holding partner name's shared state.
func (k Keys) Partner(name string) string { return k.prefix() + ":partner:" + name }

// Partners is the hash of published partner configurations.
func (k Keys) Partners() string { return k.prefix() + ":partners" }

// Attempts is the fleet's capped attempt stream.
func (k Keys) Attempts() string { return k.prefix() + ":attempts" }

// Canary is the liveness probe key of one subscriber.
func (k Keys) Canary(instance string) string { return k.prefix() + ":canary:" + instance }

// CanaryTagged is a canary key with hash tag tag, which puts it on the node
// that owns the tag's slot (each master needs its own probe).
func (k Keys) CanaryTagged(instance, tag string) string {
	return k.prefix() + ":{" + tag + "}:canary:" + instance
}

// ExpiredChannel is the keyevent channel on which Redis publishes the
// expired events of database db: each message is the name of a key that
// expired. Redis names it, so it carries no prefix; Listen subscribes to
// it and tells the keys apart with ParseTrigger and NonTrigger.
func (k Keys) ExpiredChannel(db int) string { return "__keyevent@" + strconv.Itoa(db) + "__:expired" }

// NonTrigger reports whether key is one of this prefix's keys other than
// the trigger keys: every other key notifier writes (payloads, leases,
// wake flags, canaries...) starts with "P:".
func (k Keys) NonTrigger(key string) bool { return strings.HasPrefix(key, k.prefix()+":") }

// Pattern is a SCAN MATCH pattern for every key of this prefix: the prefix,
// its glob characters escaped, then "*". It also matches the keys of any
// longer prefix that starts with this one.
func (k Keys) Pattern() string { return globEscape(k.prefix()) + "*" }

// ReceiptPattern is a SCAN MATCH pattern for the enqueue receipts of this
// prefix (on a cluster, of every shard).
func (k Keys) ReceiptPattern() string {
	if k.sharded() {
		return globEscape(k.prefix()) + ":{*}:ew:*"
	}
	return globEscape(k.prefix()) + ":ew:*"
}

// globEscape escapes s for a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// ParseTrigger reads a trigger key. It parses from the right, so ids may
// contain '_'. Any other key yields an error wrapping ErrForeignKey.
func (k Keys) ParseTrigger(key string) (notifier.Trigger, error) {
	p := k.TriggerPrefix()
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
	if k.sharded() {
		// {T}<id>: the tag must be the id's own shard's.
		end := strings.IndexByte(id, '}')
		if !strings.HasPrefix(id, "{") || end < 0 {
			return bad("no hash tag")
		}
		tag := id[:end+1]
		id = id[end+1:]
		if notifier.ValidateStoredID(id) != nil || tag != k.tag(k.ShardOf(id)) {
			return bad("bad id or hash tag")
		}
	}
	if notifier.ValidateStoredID(id) != nil {
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

// ShardTag returns the hash tag text of shard s of n: a short string whose
// Redis Cluster slot (CRC16 mod 16384) lies in the s-th of n equal slot
// ranges, so that shards spread over the masters as evenly as the slot
// ranges do.
func ShardTag(s, n int) string {
	if ts, ok := tags.Load(n); ok {
		return ts.([]string)[s]
	}
	ts := make([]string, n)
	for i := range ts {
		ts[i] = findTag(i, n)
	}
	actual, _ := tags.LoadOrStore(n, ts)
	return actual.([]string)[s]
}

// tags caches ShardTag's tags per shard count: key names are built on
// every Redis call, so the lookup must not take a lock.
var tags sync.Map

func findTag(s, n int) string {
	lo := s * clusterSlots / n
	hi := (s + 1) * clusterSlots / n
	for i := 0; ; i++ {
		t := strconv.Itoa(s) + "-" + strconv.Itoa(i)
		if sl := int(Slot(t)); sl >= lo && sl < hi {
			return t
		}
	}
}

const clusterSlots = 16384

// Slot is the Redis Cluster hash slot of a key (its hash tag's, if any).
func Slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % clusterSlots
}

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// ValidatePrefix reports whether p can start notifier's keys: 1 to 64
// printable ASCII characters without spaces and without '{' or '}', which
// would become a Redis Cluster hash tag and split a notice's keys over
// slots.
func ValidatePrefix(p string) error {
	if p == "" || len(p) > 64 {
		return fmt.Errorf("key prefix %q: want 1 to 64 characters", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '{' || c == '}' {
			return fmt.Errorf("key prefix %q: only printable ASCII without spaces or braces", p)
		}
	}
	return nil
}
