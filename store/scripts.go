package store

// The Lua scripts below are every multi-key change notifier makes. Each runs
// atomically, which is what lets several serve instances share one Redis and
// still make each attempt once. Times (ARGV "now") come from the caller's
// clock, like the due scores they are compared with.

// pxUntil defines now_ms(), the server's clock in Unix ms, and
// px_until(due[, now]): the PX that makes a key expire at due (Unix ms) by
// the server's own clock (now, if the script has read it already), at least
// 1 ms (PX 0 is an error). Computing
// it here rather than in the client keeps the round trip out of the TTL, so
// a key is expired exactly when its due-index score says.
//
// wake_if_due(px, channel, flag) publishes a wake hint when an attempt is
// armed already due, at most one per 2 ms, so the dispatchers' wakers touch
// it at once instead of at their next tick.
const pxUntil = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function px_until(due, now)
  local px = tonumber(due) - (now or now_ms())
  if px < 1 then return 1 end
  return px
end
local function wake_if_due(px, channel, flag)
  if px <= 1 and redis.call('SET', flag, '', 'NX', 'PX', 2) then
    redis.call('PUBLISH', channel, '')
  end
end
`

// Trigger keys hold the integer 1: Redis shares small integer objects, so
// the value costs no allocation per key (an empty string would).

// enqueueScript stores a new notice and arms its first attempt.
//
//	KEYS[1] -> payload key      ARGV[1] -> payload
//	KEYS[2] -> due index        ARGV[2] -> due-index member of attempt n
//	KEYS[3] -> trigger key      ARGV[3] -> due time, Unix ms (the member's score)
//	KEYS[4] -> wake flag        ARGV[4] -> '1' to store it even if it was delivered
//	KEYS[5] -> receipts hash               within the dedup window (an
//	KEYS[6] -> dedup directory             operator's explicit re-send)
//	KEYS[7] -> payload table
//	                            ARGV[5] -> wake channel (a channel, not a key)
//	                            ARGV[6] -> '1' when this call is sent again
//	                                       after its reply was lost
//	                            ARGV[7] -> this call's token
//	                            ARGV[8] -> the receipts hash's TTL, ms
//	                            ARGV[9..11] -> dedup sets' prefix, the id's
//	                                       route and member (see dedupLua)
//	                            ARGV[12] -> notice id
//	                            ARGV[13] -> n, the attempt armed
//	                            ARGV[14] -> the far horizon, ms (see promoteScript)
//
// An attempt due beyond the far horizon is not put in the due index: its
// payload in the table carries its due time instead (rec_farv) until
// promoteScript moves it there.
//
// Returns 1; 3, for a call sent again, if the receipt holds this call's
// token (the first send stored the notice, which may have been delivered,
// given up or cancelled since: it is not stored again, nor called a
// duplicate); 0 if a notice with this id is pending; 2 if one was delivered
// within the dedup window. Nothing is written but for 1. A given-up or
// cancelled id may be enqueued again: it was never delivered, so sending it
// is no duplicate. A re-sent delivered id stays remembered as delivered: it
// was.
var enqueueScript = newScript(pxUntil + dedupLua + recordsLuaSrc + `
if ARGV[6] == '1' and redis.call('HGET', KEYS[5], ARGV[12]) == ARGV[7] then return 3 end
local at = rec_find(KEYS[7], ARGV[12])
if rec_exists(at) then return 0 end
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, 1) ~= '!' then return 0 end
local now = now_ms()
if ARGV[4] ~= '1' and dedup_seen(KEYS[6], ARGV[9], ARGV[10], ARGV[11], now) then return 2 end
local px = px_until(ARGV[3], now)
if px > tonumber(ARGV[14]) and #ARGV[1] + 9 <= rec_vmax then
  rec_far_mark(at, tonumber(ARGV[3]), false)
  rec_store(at, KEYS[1], rec_farv(ARGV[1], tonumber(ARGV[13]), tonumber(ARGV[3])), cur)
else
  rec_store(at, KEYS[1], ARGV[1], cur)
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
redis.call('SET', KEYS[3], 1, 'PX', px)
redis.call('HSET', KEYS[5], ARGV[12], ARGV[7])
redis.call('PEXPIRE', KEYS[5], ARGV[8])
wake_if_due(px, ARGV[5], KEYS[4])
return 1
`)

// A cancelled notice's payload is replaced by a tombstone for the dedup
// window, so that `cancel` and `status` can say it was cancelled. It starts
// with '!', which no payload does (a payload starts with its header).
// Cancelling is rare; delivered ids, which are not, are remembered in the
// compact sets of dedupLua instead.
const tombCancelled = "!cancelled"

// claimScript takes a pending attempt for one worker.
//
//	KEYS[1] -> due index        ARGV[1] -> member of the attempt
//	KEYS[2] -> payload key      ARGV[2] -> lease, ms
//	KEYS[3] -> lease key        ARGV[3] -> claim token
//	KEYS[4] -> trigger key      ARGV[4] -> lease end, Unix ms
//	KEYS[5] -> payload table    ARGV[5] -> notice id
//
// Returns {0} stale (the attempt is not pending: done, superseded, never
// existed, or re-armed for later than now by the server's clock, which a
// late duplicate of an old trigger must not claim early; a real expiry
// event always comes at or after the score, since the trigger's PX was
// computed from it on the same clock), {1} busy (another worker's lease is live), {2} orphan (indexed but
// the payload is gone: the entry is dropped), or {3, payload, score} claimed
// (score: when the attempt was armed to run, a string): the
// payload of an ended notice (a tombstone) makes the entry stale and drops it;
// lease is set, the member's score moves to the lease's end so the sweep
// leaves it alone until then, and a trigger key that has not fired yet is
// deleted (a sweep claimed it) so it cannot fire a second delivery later.
var claimScript = newScript(recordsLuaSrc + `
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due then return {0} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {1} end
local t = redis.call('TIME')
if tonumber(due) > tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 + 5 then return {0} end
local p = rec_load(KEYS[5], KEYS[2], ARGV[5])
if not p then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {2}
end
if string.sub(p, 1, 1) == '!' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {0}
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('UNLINK', KEYS[4])
return {3, p, due}
`)

// completeScript ends a claimed attempt: either arms the next attempt or
// removes the notice.
//
//	KEYS[1] -> due index        ARGV[1] -> member of the finished attempt
//	KEYS[2] -> payload key      ARGV[2] -> claim token
//	KEYS[3] -> lease key        ARGV[3] -> member of the next attempt, '' to remove the notice
//	KEYS[4] -> next trigger key ARGV[4] -> next due time, Unix ms
//	KEYS[5] -> wake flag        ARGV[5] -> '1' to remember the id as delivered when removing
//	KEYS[6] -> dedup directory  ARGV[6] -> the dedup window, ms (0: remember nothing)
//	KEYS[7] -> payload table    ARGV[7] -> wake channel (a channel, not a key)
//	                            ARGV[8..11] -> dedup sets' prefix, the id's route
//	                                       and member, generation length ms
//	                            ARGV[12] -> notice id
//	                            ARGV[13] -> n of the next attempt
//	                            ARGV[14] -> the far horizon, ms
//
// A next attempt due beyond the far horizon is armed in the payload table,
// as enqueueScript does, when the payload is in a bucket.
//
// Returns 1, or 0 if the claim was lost: another worker holds the lease, or
// the attempt is no longer pending. A lease that merely ran out with nobody
// taking over still completes, so a slow attempt is not repeated for nothing.
var completeScript = newScript(pxUntil + dedupLua + recordsLuaSrc + `
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[2] then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if holder then redis.call('DEL', KEYS[3]) end
if ARGV[3] == '' then
  rec_remove(KEYS[7], KEYS[2], ARGV[12])
  if ARGV[5] == '1' and tonumber(ARGV[6]) > 0 then
    dedup_remember(KEYS[6], ARGV[8], ARGV[9], ARGV[10], now_ms(), tonumber(ARGV[11]), tonumber(ARGV[6]), ` + dedupLimit + `)
  end
else
  local px = px_until(ARGV[4])
  local at, v, pos = nil, nil, nil
  if px > tonumber(ARGV[14]) then
    at = rec_find(KEYS[7], ARGV[12])
    v, pos = rec_at_get(at)
  end
  if v and #rec_plain(v) + 9 <= rec_vmax then
    rec_far_mark(at, tonumber(ARGV[4]), rec_far(v))
    redis.call('LSET', at.bucket, pos + 1, rec_farv(v, tonumber(ARGV[13]), tonumber(ARGV[4])))
  else
    redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  end
  redis.call('SET', KEYS[4], 1, 'PX', px)
  wake_if_due(px, ARGV[7], KEYS[5])
end
return 1
`)

// releaseScript hands a claimed attempt back, due now: its trigger key is
// re-armed to expire in 1 ms so any serve's subscriber picks it up.
//
//	KEYS[1] -> due index        ARGV[1] -> member
//	KEYS[2] -> lease key        ARGV[2] -> claim token
//	KEYS[3] -> trigger key      ARGV[3] -> now, Unix ms
//
// Returns 1, or 0 if the claim was not ours any more.
var releaseScript = newScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('SET', KEYS[3], 1, 'PX', 1)
return 1
`)

// extendScript lengthens a claim's lease, for an attempt whose timeout is
// longer than the lease it was claimed with. Running it twice sets the same
// lease end twice.
//
//	KEYS[1] -> due index        ARGV[1] -> member
//	KEYS[2] -> lease key        ARGV[2] -> claim token
//	                            ARGV[3] -> lease, ms
//	                            ARGV[4] -> lease end, Unix ms
//
// Returns 1, or 0 if the claim was not ours any more.
var extendScript = newScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[1])
return 1
`)

// cancelScript ends a pending notice without sending it again.
//
//	KEYS[1] -> payload key      ARGV[1] -> the payload's start the caller read (its header line)
//	KEYS[2] -> due index        ARGV[2] -> tombstone TTL, ms (0: no tombstone)
//	KEYS[3] -> lease key        ARGV[3] -> notice id
//	KEYS[4] -> parked set of the notice's partner
//	KEYS[5] -> payload table    ARGV[4..] -> due-index members of every attempt
//	KEYS[6..] -> trigger keys of every attempt
//
// Returns 1; 2 if a worker held a claim on the notice (its POST may still
// reach the partner; its completion finds no due-index entry and changes
// nothing); 0 if there is no such notice or it already ended; -1 if the
// payload changed since the caller read it (ended and enqueued again): the
// caller reads again. Only the payload's start is compared, so the body is
// neither sent nor read: a payload enqueued again has a new stamp in its
// header.
var cancelScript = newScript(recordsLuaSrc + `
local p = rec_get(KEYS[5], ARGV[3])
local far = p and rec_far(p)
if p then
  p = string.sub(rec_plain(p), 1, #ARGV[1])
else
  p = redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1)
end
if p == '' or string.sub(p, 1, 1) == '!' then return 0 end
if p ~= ARGV[1] then return -1 end
for i = 4, #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[4], ARGV[i])
end
for i = 6, #KEYS do redis.call('UNLINK', KEYS[i]) end
local inflight = redis.call('DEL', KEYS[3])
rec_remove(KEYS[5], KEYS[1], ARGV[3], far)
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], '` + tombCancelled + `', 'PX', ARGV[2])
end
if inflight == 1 then return 2 end
return 1
`)

// parkScript moves a claimed attempt out of the due index into its paused
// partner's parked set, where no sweep or waker looks.
//
// The partner's name goes into the shard's set of parked names, so its
// parked attempts are found (and re-armed) even after the partner leaves
// the config.
//
//	KEYS[1] -> due index        ARGV[1] -> member
//	KEYS[2] -> lease key        ARGV[2] -> claim token
//	KEYS[3] -> parked set       ARGV[3] -> now, Unix ms
//	KEYS[4] -> parked names     ARGV[4] -> partner name
//
// Returns 1, or 0 if the claim was lost.
var parkScript = newScript(`
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
return 1
`)

// unparkScript re-arms up to ARGV[3] attempts parked at or before ARGV[2], due then: each goes
// back into the due index and gets a trigger key expiring in 1 ms. The
// trigger keys are named from the members here (prefix ARGV[1]), so this
// script needs all keys on one node.
//
// A partner whose parked set is left empty leaves the shard's parked names.
//
//	KEYS[1] -> parked set       ARGV[1] -> trigger key prefix (Keys.TriggerPrefix: "P_")
//	KEYS[2] -> due index        ARGV[2] -> now, Unix ms
//	KEYS[3] -> parked names     ARGV[3] -> batch size
//	                            ARGV[4] -> partner name
//
// Returns how many were re-armed; 0 when the set is empty.
var unparkScript = newScript(`
local ms = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(ms) do
  redis.call('ZADD', KEYS[2], ARGV[2], m)
  redis.call('SET', ARGV[1] .. m, 1, 'PX', 1)
  redis.call('ZREM', KEYS[1], m)
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[4]) end
return #ms
`)

// partnerResultScript counts a partner's failed attempts in a row and
// pauses it when they reach a threshold.
//
//	KEYS[1] -> partner state    ARGV[1] -> '1' the attempt succeeded, '0' failed
//	                            ARGV[2] -> threshold (0: never pause)
//	                            ARGV[3] -> now, Unix ms
//	                            ARGV[4] -> '1' pause now whatever the count (410 Gone)
//	                            ARGV[5] -> reason for that
//
// Returns 1 if this call paused the partner, else 0.
var partnerResultScript = newScript(`
if ARGV[1] == '1' then
  if redis.call('HGET', KEYS[1], 'fails') ~= '0' then redis.call('HSET', KEYS[1], 'fails', 0) end
  return 0
end
local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
if redis.call('HGET', KEYS[1], 'paused') == '1' then return 0 end
local reason
if ARGV[4] == '1' then
  reason = ARGV[5]
elseif tonumber(ARGV[2]) > 0 and fails >= tonumber(ARGV[2]) then
  reason = fails .. ' failed attempts in a row'
else
  return 0
end
redis.call('HSET', KEYS[1], 'paused', 1, 'reason', reason, 'since', ARGV[3])
return 1
`)
