package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// Far attempts. A sorted-set entry costs Redis about 140 bytes, as much as
// the trigger key itself, and most of a large backlog waits for attempts
// minutes or hours away, which nothing needs in time order until shortly
// before they are due. So an attempt due beyond the far horizon (default
// defaultFarHorizon) is not put in the due index: its payload in the
// table carries a 9-byte prefix saying which attempt is armed and when,
//
//	0x02  2 bytes n, big-endian  6 bytes due time, Unix ms, big-endian
//
// and the shard's sorted set P:b:t holds, for each bucket with such
// records, a time no later than its earliest (about 3 bytes a notice, a
// bucket holding 40). Overdue, which the sweep and the waker call, runs
// promoteScript at most every promoteEvery; it moves the records due
// within the horizon into the due index, so by the
// time they are due the waker and the sweep see them exactly as before;
// the trigger key, the user's contract, is armed at once as always. A
// record is far exactly when it is not in the due index: an event for a
// far attempt that comes before its promotion (only if every sweep
// stalled for the whole horizon) is refused by the claim like any stale
// event, and the attempt is recovered by the sweep once promoted, as a
// lost event is. Payloads with keys of their own (over recordValueMax)
// are never far.
const defaultFarHorizon = 30 * time.Second

// farPrefixLen is the length of a far record's prefix.
const farPrefixLen = 9

// farInfo is what a far record's prefix says: attempt N is armed for Due.
type farInfo struct {
	N   int
	Due time.Time
}

// splitFar returns v's far prefix, if it has one, and the payload after it.
func splitFar(v []byte) (farInfo, []byte, bool) {
	if len(v) < farPrefixLen || v[0] != 2 {
		return farInfo{}, v, false
	}
	n := int(binary.BigEndian.Uint16(v[1:3]))
	var ms [8]byte
	copy(ms[2:], v[3:9])
	return farInfo{N: n, Due: time.UnixMilli(int64(binary.BigEndian.Uint64(ms[:])))}, v[farPrefixLen:], true
}

// farHorizon is r.FarHorizon or its default.
func (r *Redis) farHorizon() time.Duration {
	if r.FarHorizon > 0 {
		return r.FarHorizon
	}
	return defaultFarHorizon
}

// recStampLua defines rec_stamp(v): the stamp in binary payload v's
// header, as a decimal string, or '0' if it does not decode (the claim
// then finds the payload corrupt and drops the notice).
const recStampLua = `
local function rec_stamp(v)
  if string.byte(v, 1) ~= 1 then return '0' end
  local x, mul = 0, 1
  for k = 5, math.min(#v, 14) do
    local c = string.byte(v, k)
    x = x + (c % 128) * mul
    if c < 128 then return string.format('%.0f', x) end
    mul = mul * 128
  end
  return '0'
end
`

// promoteScript moves far records due by ARGV[1] into the due index, up to
// ARGV[3] buckets of them; their members are the due-index members the
// claim expects (ARGV[2] is the shard's member tag). A bucket's time in
// P:b:t becomes its earliest record still far, or goes if none is. Safe to
// run twice or concurrently: a record promoted is no longer far.
//
//	KEYS[1] -> the shard's table    ARGV[1] -> horizon's end, Unix ms
//	KEYS[2] -> due index            ARGV[2] -> member tag ("" on a single node)
//	                                ARGV[3] -> most buckets to visit
//
// Returns {records promoted, buckets visited}.
var promoteScript = newScript(recordsLuaSrc + recStampLua + `
local T = KEYS[1] .. ':t'
local upto = tonumber(ARGV[1])
local bs = redis.call('ZRANGE', T, '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
local moved = 0
for _, b in ipairs(bs) do
  local bucket = KEYS[1] .. ':' .. b
  local all = redis.call('LRANGE', bucket, 0, -1)
  local nextd
  local promoted = 0
  for k = 1, #all, 2 do
    local n, due = rec_far(all[k + 1])
    if n then
      if due <= upto then
        local v = string.sub(all[k + 1], 10)
        redis.call('ZADD', KEYS[2], 'NX', string.format('%.0f', due), ARGV[2] .. all[k] .. '_' .. rec_stamp(v) .. '_' .. n)
        redis.call('LSET', bucket, k, v)
        promoted = promoted + 1
      elseif not nextd or due < nextd then
        nextd = due
      end
    end
  end
  if promoted > 0 then
    redis.call('HINCRBY', KEYS[1], 'f', -promoted)
    moved = moved + promoted
  end
  if nextd then
    redis.call('ZADD', T, string.format('%.0f', nextd), b)
  else
    redis.call('ZREM', T, b)
  end
end
return {moved, #bs}
`)

// promoteBuckets is how many buckets one promoteScript call visits: about
// 2,500 records, a few milliseconds of Redis.
const promoteBuckets = 64

// promoteEvery is how often promote runs at most: the waker reads the due
// index up to a hundred times a second, which the far records, at least
// a horizon away, never need.
const promoteEvery = 250 * time.Millisecond

// promote moves every far record due within the horizon into the due
// index, shard by shard, at most once per promoteEvery (the sweep and the
// waker both call it through Overdue). A shard that fails is logged and
// left for the next call; the due index it serves is still read.
func (r *Redis) promote(ctx context.Context) {
	// The pace is real time, whatever clock the due times follow.
	at, last := time.Now().UnixNano(), r.promoted.Load()
	if at-last < int64(promoteEvery) || !r.promoted.CompareAndSwap(last, at) {
		return
	}
	upto := strconv.FormatInt(r.Now().Add(r.farHorizon()).UnixMilli(), 10)
	for s := range r.keys.ShardCount() {
		tag := r.keys.tag(s)
		for range 64 {
			res, err := promoteScript.Run(ctx, r.rdb, []string{r.keys.RecordsShard(s), r.keys.DueShard(s)}, upto, tag, promoteBuckets).Int64Slice()
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("promote far attempts", "shard", s, "err", err)
				}
				break
			}
			if len(res) < 2 || res[1] < promoteBuckets {
				break
			}
		}
	}
}

// farRecordsScript returns the far records of buckets ARGV[2..] as flat
// id, n, due, header quadruples, each header cut to ARGV[1] bytes at most.
//
//	KEYS[1] -> the shard's table    ARGV[1] -> byte limit
//	                                ARGV[2..] -> bucket numbers
var farRecordsScript = newScript(recordsLuaSrc + `
local out = {}
local limit = tonumber(ARGV[1])
for k = 2, #ARGV do
  local all = redis.call('LRANGE', KEYS[1] .. ':' .. ARGV[k], 0, -1)
  for j = 1, #all, 2 do
    local n, due = rec_far(all[j + 1])
    if n then
      out[#out + 1] = all[j]
      out[#out + 1] = n
      out[#out + 1] = string.format('%.0f', due)
      out[#out + 1] = rec_head(all[j + 1], limit)
    end
  end
end
return out
`)

// eachFar calls fn for every far attempt (see EachPending), a page of
// buckets at a time.
func (r *Redis) eachFar(ctx context.Context, fn func(notifier.PendingNotice) error) error {
	for s := range r.keys.ShardCount() {
		times := r.keys.RecordsShard(s) + ":t"
		var cursor uint64
		for {
			ms, next, err := r.rdb.ZScan(ctx, times, cursor, "", ListPage/recordLoad+1).Result()
			if err != nil {
				return fmt.Errorf("scan %s: %w", times, err)
			}
			args := []any{maxHead}
			for i := 0; i < len(ms); i += 2 {
				args = append(args, ms[i])
			}
			if len(args) > 1 {
				vals, err := farRecordsScript.Run(ctx, r.rdb, []string{r.keys.RecordsShard(s)}, args...).Slice()
				if err != nil && !errors.Is(err, redis.Nil) {
					return fmt.Errorf("read far attempts: %w", err)
				}
				for i := 0; i+3 < len(vals); i += 4 {
					id, _ := vals[i].(string)
					n, _ := vals[i+1].(int64)
					dueStr, _ := vals[i+2].(string)
					head, _ := vals[i+3].(string)
					due, err := strconv.ParseInt(dueStr, 10, 64)
					if err != nil {
						continue
					}
					no, err := decodeHeader(id, []byte(head))
					if err != nil {
						continue
					}
					if err := fn(notifier.PendingNotice{Notice: no, N: int(n), Due: time.UnixMilli(due)}); err != nil {
						return err
					}
				}
			}
			cursor = next
			if cursor == 0 {
				break
			}
		}
	}
	return nil
}

// farCount returns how many far records the shards hold together.
func (r *Redis) farCount(ctx context.Context) (int64, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, r.keys.ShardCount())
	for s := range cmds {
		cmds[s] = pipe.HGet(ctx, r.keys.RecordsShard(s), "f")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("count far attempts: %w", err)
	}
	var n int64
	for _, c := range cmds {
		v, _ := c.Int64()
		n += v
	}
	return n, nil
}
