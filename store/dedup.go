package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Compact dedup: how serve remembers, for the dedup window, the ids of the
// notices it delivered, at about 20 bytes of Redis per id.
//
// A one-key-per-id tombstone costs ~200 bytes (key, dict entries, expiry
// entry, value), which at 1,000 deliveries/s is 16 GB per day. Instead each
// id is reduced to a SHA-256 digest: 64 bits pick its place (the route, 16
// hex digits), 64 other bits are stored (the member, a decimal int64). The
// members live in Redis sets of integers, which Redis stores as a sorted
// array of int64 (an intset: 8 bytes per member) while a set has at most
// set-max-intset-entries (512 by default) members.
//
// Sets fill up, so they form a trie per generation: node r (the route's
// first hex digit) holds members until it has dedupLimit-1 of them,
// then gets the marker member 0 ("full: look in my children") and new ids
// go one level down, to node rr' (the route's first two digits), and so
// on. Members never move, so a lookup walks the route from the top while
// the nodes it passes are marked full: one SMISMEMBER per level, and
// log16(ids/500) levels.
//
// Whole sets expire; single members cannot (Redis 7.0 has no per-member
// TTL). So ids are grouped in generations of half the window: an id
// delivered in generation g (by the Redis server's clock) is in sets that
// expire at the end of g plus the window, so it is remembered for at least
// the window and at most 1.5 windows. The generations still alive are
// listed in a small hash (the directory, one per due-index shard), field
// "<generation length ms>.<g>", value its sets' expiry in Unix ms: a lookup
// walks each listed generation, and a change of --dedup-window only starts
// new generations (the old ones stay findable until they expire). Field
// "#<generation>" counts the ids remembered in it, for the gauges.
//
// Exactness: a lookup answers "delivered" only if a set on its route holds
// its member. Ids with different digests never match; two ids match
// falsely only if their 64-bit members are equal, and a lookup compares
// its member with at most (generations x levels x 512) members, so the
// chance that a given new id is refused by mistake is below
// 3 x 16 x 512 / 2^64 < 1.4e-15 (at 1,000 enqueues/s: once in 20,000
// years). On a Redis Cluster every set of a notice's shard carries the
// shard's hash tag, like its other keys, so a script reaches them all.

// dedupLimit is Redis's default set-max-intset-entries: a node stays
// an intset up to that many members, marker included. On a Redis with a
// lower setting the fuller nodes become hash tables: larger, still exact.
// It is text because the scripts embed it.
const dedupLimit = "512"

// dedupLua defines, for the scripts that consult or extend the memory of
// delivered ids:
//
//	dedup_seen(dir, nodes, route, member, now) -> true if remembered
//	dedup_live(dir, nodes, now) -> the live generations' set prefixes, which
//	    dedup_seen_in(bases, route, member) consults: a script asking for
//	    many ids reads the directory once
//	dedup_gen(dir, now, gen_ms, window_ms) -> gen, the current generation
//	dedup_add(gen, nodes, route, member, limit) remembers one id in it
//	dedup_flush(gen) writes the generation's count, once for every id a
//	    script added
//
// dir is the directory hash, nodes the prefix of the sets' names ("P:d:"),
// now the server's time in Unix ms. Remembering the same id twice changes
// nothing the second time, so a script that does it may run twice.
const dedupLua = `
local function fmt_int(x) return string.format('%.0f', x) end
local function dedup_live(dir, nodes, now)
  local kv, bases = redis.call('HGETALL', dir), {}
  for i = 1, #kv, 2 do
    if string.sub(kv[i], 1, 1) ~= '#' and tonumber(kv[i+1]) > now then
      bases[#bases + 1] = nodes .. kv[i] .. ':'
    end
  end
  return bases
end
local function dedup_seen_in(bases, route, member)
  for _, base in ipairs(bases) do
    for l = 1, #route do
      local r = redis.call('SMISMEMBER', base .. string.sub(route, 1, l), member, '0')
      if r[1] == 1 then return true end
      if r[2] == 0 then break end
    end
  end
  return false
end
local function dedup_seen(dir, nodes, route, member, now)
  return dedup_seen_in(dedup_live(dir, nodes, now), route, member)
end
local function dedup_gen(dir, now, gen_ms, window_ms)
  local g = math.floor(now / gen_ms)
  local name = fmt_int(gen_ms) .. '.' .. fmt_int(g)
  local exp = (g + 1) * gen_ms + window_ms
  if redis.call('HSETNX', dir, name, fmt_int(exp)) == 1 then
    local kv = redis.call('HGETALL', dir)
    for i = 1, #kv, 2 do
      if string.sub(kv[i], 1, 1) ~= '#' and tonumber(kv[i+1]) <= now then redis.call('HDEL', dir, kv[i], '#' .. kv[i]) end
    end
    local pttl = redis.call('PTTL', dir)
    if pttl < 0 or now + pttl < exp then redis.call('PEXPIREAT', dir, fmt_int(exp)) end
  end
  return {dir = dir, name = name, exp = exp, added = 0}
end
local function dedup_add(gen, nodes, route, member, limit)
  local base = nodes .. gen.name .. ':'
  for l = 1, #route do
    local key = base .. string.sub(route, 1, l)
    local r = redis.call('SMISMEMBER', key, member, '0')
    if r[1] == 1 then return end
    if r[2] == 0 then
      local n = redis.call('SCARD', key)
      if l == #route or n < limit - 1 then
        redis.call('SADD', key, member)
        gen.added = gen.added + 1
        if n == 0 then redis.call('PEXPIREAT', key, fmt_int(gen.exp)) end
        return
      end
      redis.call('SADD', key, '0')
    end
  end
end
local function dedup_flush(gen)
  if gen.added > 0 then redis.call('HINCRBY', gen.dir, '#' .. gen.name, gen.added) end
end
`

// dedupDigest is id's place in the memory of delivered ids: its route (16
// hex digits) and its member (a non-zero int64, in decimal, so Redis keeps
// it in an intset).
func dedupDigest(id string) (route, member string) {
	sum := sha256.Sum256([]byte(id))
	m := int64(binary.BigEndian.Uint64(sum[8:16]))
	if m == 0 {
		m = 1 // 0 is the nodes' "full" marker
	}
	return hex.EncodeToString(sum[:8]), strconv.FormatInt(m, 10)
}

// seenScript reports whether a delivered notice's id is remembered.
//
//	KEYS[1] -> dedup directory  ARGV[1] -> prefix of the dedup sets' names
//	                            ARGV[2] -> route   ARGV[3] -> member
//
// Returns 1 if it is, else 0. It writes nothing.
var seenScript = newScript(dedupLua + `
local t = redis.call('TIME')
if dedup_seen(KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) then return 1 end
return 0
`)

// Delivered reports whether notice id was delivered within the dedup
// window (as far as serve remembers: see dedupLua).
func (r *Redis) Delivered(ctx context.Context, id string) (bool, error) {
	cmds, err := r.evalPipelined(ctx, []scriptCall{{seenScript, []string{r.keys.DedupDir(id)}, r.dedupRef(id)}})
	if err != nil {
		return false, fmt.Errorf("look up delivered id %s: %w", id, err)
	}
	v, err := cmds[0].Int()
	if err != nil {
		return false, fmt.Errorf("look up delivered id %s: %w", id, err)
	}
	return v == 1, nil
}

// dedupRef is where the memory of delivered ids keeps notice id: the
// prefix of its shard's dedup sets' names, its route and its member. The
// scripts take them as three ARGVs, in this order.
func (r *Redis) dedupRef(id string) []any {
	route, member := dedupDigest(id)
	return []any{r.keys.DedupNodes(id), route, member}
}

// dedupGeneration is the generation length for window w: half of it, so
// an id is remembered for between w and 1.5 w.
func dedupGeneration(w time.Duration) time.Duration {
	return max(w/2, time.Millisecond)
}

// RememberedDelivered is how many delivered ids Redis remembers for the
// dedup window: the counts of the live generations of every shard's
// directory (a few small hashes, whatever the count).
func (r *Redis) RememberedDelivered(ctx context.Context) (int64, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, r.keys.ShardCount())
	for s := range cmds {
		cmds[s] = pipe.HGetAll(ctx, r.keys.DedupDirShard(s))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("count delivered ids: %w", err)
	}
	now := time.Now().UnixMilli()
	var total int64
	for _, c := range cmds {
		dir := c.Val()
		for f, v := range dir {
			if !strings.HasPrefix(f, "#") {
				continue
			}
			exp, err := strconv.ParseInt(dir[f[1:]], 10, 64)
			n, err2 := strconv.ParseInt(v, 10, 64)
			if err != nil || err2 != nil || exp <= now {
				continue // expired, or not ours to read
			}
			total += n
		}
	}
	return total, nil
}
