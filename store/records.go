package store

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Pending notices' payloads live in shared small lists rather than one
// string key each: a key costs about 100 bytes of Redis bookkeeping before
// its value, an entry of a listpack a few. The lists of one shard form a
// linear-hashing table (Litwin, 1980), so it grows and shrinks one bucket
// at a time with the number of notices, and every lookup is one LPOS and
// one LINDEX however large it gets:
//
//	P:b        meta hash: i (level), p (split pointer), n (records held),
//	           f (how many are far: see far.go), L (1: no previous table)
//	P:b:<b>    bucket b: list of pairs, notice id then its payload
//
// A notice's bucket is h mod 2^i, or h mod 2^(i+1) when that is below p,
// where h is the first 32 bits of SHA-1 of its id: redis.sha1hex in the
// scripts, or recordHash from the caller of the enqueue, claim and
// complete scripts, which spares Redis a SHA-1 per notice each (Redis's
// own SHA-1 was 3% of its instructions per enqueued line). After an insert
// that brings the average above recordLoad per bucket, bucket p splits into p and p+2^i;
// after a delete that brings it under a quarter of that, the last bucket
// merges back. A pair is removed by overwriting its payload with its id
// and removing both copies of the id (LSET, LREM): ids are unique in a
// bucket, and no payload equals an id.
//
// Lists rather than hashes: a hash stays a compact listpack only while
// every value fits hash-max-listpack-value (64 bytes by default, less than
// any payload), and a hash table costs some 70 bytes more per notice,
// whereas a list's listpack nodes take entries of any size at Redis's
// default settings. So no setting needs changing, on any Redis. An id is
// never mistaken for a payload by LPOS: ids are printable ASCII, and
// payloads start with a byte below 0x20.
//
// A payload longer than recordValueMax is stored under its own key
// P:p:<id> instead, where payloads of releases before the table are found
// too: readers look in the bucket first, then there. Keeping large
// payloads out of buckets keeps every bucket operation cheap, and lets a
// listing cut headers out of buckets without copying bodies. The release
// before this one kept the same table in hashes (P:r, P:r:<b>); readers
// and removers look there when a notice is in neither of the above, so an
// upgrade needs no migration, and nothing is added to it. Once an enqueue
// finds it gone, field L of P:b says so, and lookups skip it.
const recordLoad = 40

// recordValueMax is the largest payload (header and body) a bucket takes;
// larger ones keep a key of their own, which costs little next to their
// size, so no bucket operation copies a large body.
const recordValueMax = 4096

// recordsLua defines the scripts' access to the table. A script reads the
// meta hash once (rec_state(meta) -> st), however many notices it handles,
// and writes it back once (rec_state_save(st)) if st.dirty says it changed;
// the functions that store and remove keep st current through splits and
// merges. rec_get_st(st, id) returns the payload in its bucket (or the
// previous release's table) or false (rec_get(meta, id) for a single one);
// rec_find_st locates a notice's place once, for rec_exists, rec_at_get
// and rec_store(st, at, key, value, had_key) (which puts a payload that
// fits in its bucket, else under its own key, for a notice rec_exists has
// just found absent; rec_put_st appends to a bucket and splits); rec_del_st
// removes one from its bucket, returning 1, or 0 if it was in no bucket,
// and rec_remove_st from wherever it is kept. Splits and merges move whole
// buckets inside the calling script, so no reader ever sees a notice in two
// buckets or in none. rec_find_st, rec_get_st, rec_load, rec_del_st and
// rec_remove_st take the notice's hash h as a last argument (recordHash's,
// a string) or compute it when it is nil. rec_n(b) writes bucket number b
// with %d, a third of
// the cost of tostring, whose %.14g goes through the C library's
// floating-point printing.
const recordsLua = `
local rec_vmax = VMAX
local function rec_n(b) return string.format('%d', b) end
local function rec_meta(meta)
  local m = redis.call('HMGET', meta, 'i', 'p', 'n', 'L')
  return tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(m[3]) or 0, m[4] == '1'
end
local function rec_hash(id)
  return tonumber(string.sub(redis.sha1hex(id), 1, 8), 16)
end
local function rec_hash_of(id, h)
  return h and tonumber(h) or rec_hash(id)
end
local function rec_bucket_no(h, i, p)
  local m = 2 ^ i
  local b = h % m
  if b < p then b = h % (2 * m) end
  return b
end
local function rec_bucket(meta, h, i, p)
  return meta .. ':' .. rec_n(rec_bucket_no(h, i, p))
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
local function rec_append(dst, pairs_)
  for k = 1, #pairs_, 400 do
    redis.call('RPUSH', dst, unpack(pairs_, k, math.min(k + 399, #pairs_)))
  end
end
local function rec_pos(bucket, id)
  return redis.call('LPOS', bucket, id)
end
local function rec_cut(bucket, pos, id)
  redis.call('LSET', bucket, pos + 1, id)
  redis.call('LREM', bucket, 2, id)
end
local function rec_put_st(st, bucket, id, value)
  redis.call('RPUSH', bucket, id, value)
  st.n = st.n + 1
  local i, p = st.i, st.p
  if st.n <= LOAD * (2 ^ i + p) then return end
  local meta = st.meta
  local src = meta .. ':' .. rec_n(p)
  local all = redis.call('LRANGE', src, 0, -1)
  local m2 = 2 ^ (i + 1)
  local kept, moved = {}, {}
  for k = 1, #all, 2 do
    local into = kept
    if rec_hash(all[k]) % m2 ~= p then into = moved end
    into[#into + 1] = all[k]
    into[#into + 1] = all[k + 1]
  end
  if #moved > 0 then
    redis.call('DEL', src)
    rec_append(src, kept)
    rec_append(meta .. ':' .. rec_n(p + 2 ^ i), moved)
    local md = rec_min_far(moved, 2, 2)
    if md then redis.call('ZADD', meta .. ':t', 'LT', string.format('%.0f', md), rec_n(p + 2 ^ i)) end
  end
  p = p + 1
  if p == 2 ^ i then i, p = i + 1, 0 end
  st.i, st.p, st.resized = i, p, true
end
local function rec_state_save(st)
  if st.resized then
    redis.call('HSET', st.meta, 'i', st.i, 'p', st.p, 'n', st.n)
  else
    redis.call('HSET', st.meta, 'n', st.n)
  end
end
local function rec_del_st(st, id, h)
  local meta = st.meta
  local bucket = meta .. ':' .. rec_n(rec_bucket_no(rec_hash_of(id, h), st.i, st.p))
  local pos = rec_pos(bucket, id)
  if not pos then return 0 end
  rec_cut(bucket, pos, id)
  st.n, st.dirty = st.n - 1, true
  if st.n == 0 then redis.call('DEL', meta .. ':t') end
  local i, p = st.i, st.p
  local nb = 2 ^ i + p
  if nb == 1 or st.n * 4 >= LOAD * nb then return 1 end
  if p == 0 then i, p = i - 1, 2 ^ (i - 1) end
  p = p - 1
  local src = meta .. ':' .. rec_n(p + 2 ^ i)
  local all = redis.call('LRANGE', src, 0, -1)
  if #all > 0 then
    rec_append(meta .. ':' .. rec_n(p), all)
    redis.call('DEL', src)
  end
  local t = redis.call('ZSCORE', meta .. ':t', rec_n(p + 2 ^ i))
  if t then
    redis.call('ZADD', meta .. ':t', 'LT', t, rec_n(p))
    redis.call('ZREM', meta .. ':t', rec_n(p + 2 ^ i))
  end
  st.i, st.p, st.resized = i, p, true
  return 1
end
local function rec_legacy(meta)
  return string.sub(meta, 1, -2) .. 'r'
end
local function rec_legacy_bucket(meta, id)
  local lm = rec_legacy(meta)
  local i, p, n = rec_meta(lm)
  if n == 0 then return nil end
  return rec_bucket(lm, rec_hash(id), i, p), lm, n
end
local function rec_legacy_get(meta, id)
  local b = rec_legacy_bucket(meta, id)
  if not b then return false end
  return redis.call('HGET', b, id)
end
local function rec_legacy_del(meta, id)
  local b, lm, n = rec_legacy_bucket(meta, id)
  if not b or redis.call('HDEL', b, id) == 0 then return 0 end
  if n <= 1 then
    redis.call('DEL', lm)
  else
    redis.call('HSET', lm, 'n', n - 1)
  end
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
local function rec_head(v, limit)
  local plain = rec_plain(v)
  return string.sub(plain, 1, math.min(limit, rec_head_len(plain) or #plain))
end
local function rec_state(meta)
  local i, p, n, nolegacy = rec_meta(meta)
  return {meta = meta, i = i, p = p, n = n, nolegacy = nolegacy}
end
local function rec_find_st(st, id, h)
  local b = rec_n(rec_bucket_no(rec_hash_of(id, h), st.i, st.p))
  return {meta = st.meta, b = b, bucket = st.meta .. ':' .. b, id = id, nolegacy = st.nolegacy}
end
local function rec_at_get(at)
  local pos = rec_pos(at.bucket, at.id)
  if not pos then return false end
  return redis.call('LINDEX', at.bucket, pos + 1), pos
end
local function rec_get_st(st, id, h)
  local v = rec_at_get(rec_find_st(st, id, h))
  if v or st.nolegacy then return v end
  return rec_legacy_get(st.meta, id)
end
local function rec_get(meta, id)
  return rec_get_st(rec_state(meta), id)
end
local function rec_load(st, key, id, h)
  return rec_plain(rec_get_st(st, id, h)) or redis.call('GET', key)
end
local function rec_far_mark(at, due, was_far)
  redis.call('ZADD', at.meta .. ':t', 'LT', string.format('%.0f', due), at.b)
  if not was_far then redis.call('HINCRBY', at.meta, 'f', 1) end
end
local function rec_exists(at)
  if rec_pos(at.bucket, at.id) then return true end
  if at.nolegacy then return false end
  local b = rec_legacy_bucket(at.meta, at.id)
  if not b then
    redis.call('HSET', at.meta, 'L', 1)
    return false
  end
  return redis.call('HEXISTS', b, at.id) == 1
end
local function rec_store(st, at, key, value, had_key)
  if #value > VMAX then
    redis.call('SET', key, value)
    return
  end
  if had_key then redis.call('DEL', key) end
  rec_put_st(st, at.bucket, at.id, value)
  st.dirty = true
end
local function rec_remove_st(st, key, id, far, h)
  if rec_del_st(st, id, h) == 1 then
    if far then redis.call('HINCRBY', st.meta, 'f', -1) end
  elseif rec_legacy_del(st.meta, id) == 0 then
    redis.call('DEL', key)
  end
end
local function rec_remove(meta, key, id, far)
  local st = rec_state(meta)
  rec_remove_st(st, key, id, far)
  if st.dirty then rec_state_save(st) end
end
`

// recordHash is h for notice id, as the scripts' rec_hash computes it (the
// first 32 bits of SHA-1 of the id), in decimal: passed to the scripts that
// handle every notice, so that Redis need not hash it.
func recordHash(id string) string {
	sum := sha1.Sum([]byte(id))
	return strconv.FormatUint(uint64(binary.BigEndian.Uint32(sum[:4])), 10)
}

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
local limit = tonumber(ARGV[1])
local st = rec_state(KEYS[1])
local out = {}
for k = 2, #ARGV do
  local v = rec_get_st(st, ARGV[k])
  if v and limit > 0 then
    local prefix = ''
    if rec_far(v) then prefix = string.sub(v, 1, 9) end
    v = prefix .. rec_head(v, limit)
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
