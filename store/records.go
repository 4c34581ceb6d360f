package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Pending notices' payloads live in shared small hashes rather than one
// string key each: a key costs about 100 bytes of Redis bookkeeping before
// its value, a field of a listpack-encoded hash a few. The hashes of one
// shard form a linear-hashing table (Litwin, 1980), so it grows and
// shrinks one bucket at a time with the number of notices, and every
// lookup is one HGET however large it gets:
//
//	P:r        meta hash: i (level), p (split pointer), n (records held)
//	P:r:<b>    bucket b: notice id -> payload
//
// A notice's bucket is h mod 2^i, or h mod 2^(i+1) when that is below p,
// where h is the first 32 bits of SHA-1 of its id (redis.sha1hex, so the
// scripts need nothing from the caller). After an insert that brings the
// average above recordLoad per bucket, bucket p splits into p and p+2^i;
// after a delete that brings it under a quarter of that, the last bucket
// merges back. Buckets therefore hold about recordLoad notices, well inside
// Redis's default hash-max-listpack-entries (128), so they stay listpacks as
// long as each payload fits hash-max-listpack-value: serve raises that to
// recordValueMax where it may (see Redis.TuneRecords). A payload longer than
// recordValueMax is stored under its own key P:p:<id> instead, where
// payloads of earlier releases are found too: readers look in the bucket
// first, then there. Keeping large payloads out of buckets keeps every
// bucket operation cheap, and lets a listing cut headers out of buckets
// without copying bodies.
const recordLoad = 40

// recordValueMax is the largest payload (header and body) a bucket takes,
// and the hash-max-listpack-value serve sets where it may, so that such
// payloads share listpacks; larger ones keep a key of their own, which
// costs little next to their size. Where the setting stays lower, buckets
// are hash tables: more memory per notice, still less than a key each.
const recordValueMax = 4096

// recordsLua defines the scripts' access to the table. rec_get(meta, id)
// returns the payload in its bucket or false; rec_find locates a notice's
// place once, for rec_exists and rec_store (which puts a payload that fits
// in its bucket, else in its own key); rec_del removes one, returning 1, or
// 0 if it was in no bucket. Splits and merges move whole buckets inside
// the calling script, so no reader ever sees a notice in two buckets or in
// none.
const recordsLua = `
local rec_vmax = VMAX
local function rec_meta(meta)
  local m = redis.call('HMGET', meta, 'i', 'p', 'n')
  return tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(m[3]) or 0
end
local function rec_hash(id)
  return tonumber(string.sub(redis.sha1hex(id), 1, 8), 16)
end
local function rec_bucket_no(h, i, p)
  local m = 2 ^ i
  local b = h % m
  if b < p then b = h % (2 * m) end
  return b
end
local function rec_bucket(meta, h, i, p)
  return meta .. ':' .. tostring(rec_bucket_no(h, i, p))
end
local function rec_far(v)
  if string.byte(v, 1) ~= 2 or #v < 9 then return nil end
  local a, b, c1, c2, c3, c4, c5, c6 = string.byte(v, 2, 9)
  return a * 256 + b, ((((c1 * 256 + c2) * 256 + c3) * 256 + c4) * 256 + c5) * 256 + c6
end
local function rec_plain(v)
  if v and rec_far(v) then return string.sub(v, 10) end
  return v
end
local function rec_farv(v, n, due)
  local d, bs = due, {}
  for k = 6, 1, -1 do
    bs[k] = d % 256
    d = math.floor(d / 256)
  end
  return string.char(2, math.floor(n / 256) % 256, n % 256, unpack(bs)) .. rec_plain(v)
end
local function rec_min_far(vals, from, step)
  local md
  for k = from, #vals, step do
    local _, d = rec_far(vals[k])
    if d and (not md or d < md) then md = d end
  end
  return md
end
local function rec_move(src, dst, pairs_)
  for k = 1, #pairs_, 400 do
    local chunk, fields = {}, {}
    for j = k, math.min(k + 399, #pairs_), 2 do
      chunk[#chunk + 1] = pairs_[j]
      chunk[#chunk + 1] = pairs_[j + 1]
      fields[#fields + 1] = pairs_[j]
    end
    redis.call('HSET', dst, unpack(chunk))
    if src then redis.call('HDEL', src, unpack(fields)) end
  end
end
local function rec_put_at(meta, bucket, id, value, i, p, n)
  if redis.call('HSET', bucket, id, value) == 0 then return end
  n = n + 1
  if n <= LOAD * (2 ^ i + p) then
    redis.call('HSET', meta, 'n', n)
    return
  end
  local src = meta .. ':' .. tostring(p)
  local all = redis.call('HGETALL', src)
  local m2 = 2 ^ (i + 1)
  local moved = {}
  for k = 1, #all, 2 do
    if rec_hash(all[k]) % m2 ~= p then
      moved[#moved + 1] = all[k]
      moved[#moved + 1] = all[k + 1]
    end
  end
  if #moved > 0 then
    rec_move(src, meta .. ':' .. tostring(p + 2 ^ i), moved)
    local md = rec_min_far(moved, 2, 2)
    if md then redis.call('ZADD', meta .. ':t', 'LT', string.format('%.0f', md), tostring(p + 2 ^ i)) end
  end
  p = p + 1
  if p == 2 ^ i then i, p = i + 1, 0 end
  redis.call('HSET', meta, 'i', i, 'p', p, 'n', n)
end
local function rec_del(meta, id)
  local i, p, n = rec_meta(meta)
  if redis.call('HDEL', rec_bucket(meta, rec_hash(id), i, p), id) == 0 then return 0 end
  n = n - 1
  if n == 0 then redis.call('DEL', meta .. ':t') end
  local nb = 2 ^ i + p
  if nb == 1 or n * 4 >= LOAD * nb then
    redis.call('HSET', meta, 'n', n)
    return 1
  end
  if p == 0 then i, p = i - 1, 2 ^ (i - 1) end
  p = p - 1
  local src = meta .. ':' .. tostring(p + 2 ^ i)
  local all = redis.call('HGETALL', src)
  if #all > 0 then
    rec_move(nil, meta .. ':' .. tostring(p), all)
    redis.call('DEL', src)
  end
  local st = redis.call('ZSCORE', meta .. ':t', tostring(p + 2 ^ i))
  if st then
    redis.call('ZADD', meta .. ':t', 'LT', st, tostring(p))
    redis.call('ZREM', meta .. ':t', tostring(p + 2 ^ i))
  end
  redis.call('HSET', meta, 'i', i, 'p', p, 'n', n)
  return 1
end
local function rec_head_len(v)
  local c = string.byte(v, 1)
  if c == 123 then return string.find(v, '\n', 1, true) end
  if c == 1 and #v >= 4 then
    local a, b, d = string.byte(v, 2, 4)
    return 4 + a * 65536 + b * 256 + d
  end
  return nil
end
local function rec_find(meta, id)
  local i, p, n = rec_meta(meta)
  local b = rec_bucket_no(rec_hash(id), i, p)
  return {meta = meta, b = tostring(b), bucket = meta .. ':' .. tostring(b), id = id, i = i, p = p, n = n}
end
local function rec_get(meta, id)
  return redis.call('HGET', rec_find(meta, id).bucket, id)
end
local function rec_load(meta, key, id)
  return rec_plain(rec_get(meta, id)) or redis.call('GET', key)
end
local function rec_far_mark(at, due, was_far)
  redis.call('ZADD', at.meta .. ':t', 'LT', string.format('%.0f', due), at.b)
  if not was_far then redis.call('HINCRBY', at.meta, 'f', 1) end
end
local function rec_exists(at)
  return redis.call('HEXISTS', at.bucket, at.id) == 1
end
local function rec_store(at, key, value, had_key)
  if #value > VMAX then
    redis.call('SET', key, value)
    return
  end
  if had_key then redis.call('DEL', key) end
  rec_put_at(at.meta, at.bucket, at.id, value, at.i, at.p, at.n)
end
local function rec_remove(meta, key, id, far)
  if rec_del(meta, id) == 0 then
    redis.call('DEL', key)
  elseif far then
    redis.call('HINCRBY', meta, 'f', -1)
  end
end
`

// recordsLuaSrc is recordsLua with its load factor filled in.
var recordsLuaSrc = strings.NewReplacer("LOAD", strconv.Itoa(recordLoad), "VMAX", strconv.Itoa(recordValueMax)).Replace(recordsLua)

// readRecordsScript returns the payloads of ids held in the table (false
// for the others), each cut to its first ARGV[1] bytes or to its header
// line, whichever is shorter, so a listing never carries bodies. A far
// record keeps its prefix (see splitFar).
//
//	KEYS[1] -> the shard's table    ARGV[1] -> byte limit (0: whole payloads)
//	                                ARGV[2..] -> notice ids
var readRecordsScript = newScript(recordsLuaSrc + `
local i, p = rec_meta(KEYS[1])
local limit = tonumber(ARGV[1])
local out = {}
for k = 2, #ARGV do
  local v = redis.call('HGET', rec_bucket(KEYS[1], rec_hash(ARGV[k]), i, p), ARGV[k])
  if v and limit > 0 then
    local off = 0
    if rec_far(v) then off = 9 end
    local plain = string.sub(v, off + 1)
    v = string.sub(v, 1, off + math.min(limit, rec_head_len(plain) or #plain))
  end
  out[#out + 1] = v
end
return out
`)

// readRecords returns, for each id, its payload from the table (cut as
// readRecordsScript says when limit > 0), or nil if the table does not hold
// it (it may have a key of its own, or be gone), and what its far prefix
// says if it has one (N is 0 if not).
func (r *Redis) readRecords(ctx context.Context, ids []string, limit int) ([][]byte, []farInfo, error) {
	out := make([][]byte, len(ids))
	fars := make([]farInfo, len(ids))
	byShard := make(map[int][]int)
	for i, id := range ids {
		s := r.keys.ShardOf(id)
		byShard[s] = append(byShard[s], i)
	}
	shards := make([]int, 0, len(byShard))
	calls := make([]scriptCall, 0, len(byShard))
	for s, idx := range byShard {
		args := make([]any, 0, len(idx)+1)
		args = append(args, limit)
		for _, i := range idx {
			args = append(args, ids[i])
		}
		shards = append(shards, s)
		calls = append(calls, scriptCall{readRecordsScript, []string{r.keys.RecordsShard(s)}, args})
	}
	cmds, err := r.evalPipelined(ctx, calls)
	if err != nil {
		return nil, nil, fmt.Errorf("read %d notices: %w", len(ids), err)
	}
	for c, cmd := range cmds {
		vals, err := cmd.Slice()
		if err != nil {
			return nil, nil, fmt.Errorf("read %d notices: %w", len(ids), err)
		}
		for j, i := range byShard[shards[c]] {
			if j < len(vals) {
				if v, ok := vals[j].(string); ok {
					fars[i], out[i], _ = splitFar([]byte(v))
				}
			}
		}
	}
	return out, fars, nil
}

// readPayload returns notice id's whole payload, from its bucket or its own
// key, or redis.Nil if there is none (a tombstone is returned as it is).
func (r *Redis) readPayload(ctx context.Context, id string) ([]byte, error) {
	vals, _, err := r.readRecords(ctx, []string{id}, 0)
	if err != nil {
		return nil, err
	}
	if vals[0] != nil {
		return vals[0], nil
	}
	return r.rdb.Get(ctx, r.keys.Payload(id)).Bytes()
}

// TuneRecords lets pending notices' payloads share listpacks: where serve
// may change settings (set) it raises the Redis setting
// hash-max-listpack-value to recordValueMax on every master where it is
// lower. It reports whether the setting is (now) high enough everywhere,
// and its old value where it was raised. Where it cannot be read or raised,
// buckets are hash tables: more memory per notice, nothing else changes.
func (r *Redis) TuneRecords(ctx context.Context, set bool) (ok bool, was string) {
	var nodes []redis.Cmdable
	if cc, isCluster := r.rdb.(*redis.ClusterClient); isCluster {
		var mu sync.Mutex
		_ = cc.ForEachMaster(ctx, func(_ context.Context, n *redis.Client) error {
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
			return nil
		})
	} else {
		nodes = []redis.Cmdable{r.rdb}
	}
	ok = len(nodes) > 0
	for _, n := range nodes {
		w, err := raiseListpackValue(ctx, n, set)
		if err != nil {
			r.log.Debug("cannot tune the payload table", "err", err)
			ok = false
		}
		if w != "" {
			was = w
		}
	}
	return ok, was
}

const listpackSetting = "hash-max-listpack-value"

// raiseListpackValue raises node's hash-max-listpack-value to
// recordValueMax if it is lower and set allows, returning its old value if
// it did; an error if it stays lower.
func raiseListpackValue(ctx context.Context, n redis.Cmdable, set bool) (string, error) {
	vals, err := n.ConfigGet(ctx, listpackSetting).Result()
	if err != nil {
		return "", fmt.Errorf("CONFIG GET %s: %w", listpackSetting, err)
	}
	cur, err := strconv.Atoi(vals[listpackSetting])
	if err != nil {
		return "", fmt.Errorf("CONFIG GET %s: %q: %w", listpackSetting, vals[listpackSetting], errors.ErrUnsupported)
	}
	if cur >= recordValueMax {
		return "", nil
	}
	if !set {
		return "", fmt.Errorf("%s is %d", listpackSetting, cur)
	}
	if err := n.ConfigSet(ctx, listpackSetting, strconv.Itoa(recordValueMax)).Err(); err != nil {
		return "", fmt.Errorf("CONFIG SET %s: %w", listpackSetting, err)
	}
	return strconv.Itoa(cur), nil
}
