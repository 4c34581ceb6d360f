package store

// The Lua scripts below are every multi-key change notifier makes, but for
// the far records' promotion (promoteScript, in far.go, beside the rest of
// that mechanism); the Lua fragments they share are in eval.go. Each runs
// atomically, which is what lets several serve instances share one Redis
// and still make each attempt once. Times (ARGV "now") come from the
// caller's clock, like the due scores they are compared with.

// Trigger keys hold the integer 1: Redis shares small integer objects, so
// the value costs no allocation per key (an empty string would).

// enqueueScript stores new notices of one shard and arms their first
// attempts: a batch, so that what every notice shares (the table's state,
// the clock, the dedup directory, the receipts hash, the due index) is read
// and written once per call rather than once per notice.
//
//	KEYS[1] -> due index        ARGV[1] -> '1' to store them even if delivered
//	KEYS[2] -> wake flag                   within the dedup window (an
//	KEYS[3] -> receipts hash               operator's explicit re-send)
//	KEYS[4] -> dedup directory  ARGV[2] -> wake channel (a channel, not a key)
//	KEYS[5] -> payload table    ARGV[3] -> '1' when this call is sent again
//	KEYS[4+2k] -> notice k's               after its reply was lost
//	          payload key       ARGV[4] -> the receipts hash's TTL, ms
//	KEYS[5+2k] -> notice k's    ARGV[5] -> dedup sets' prefix (see dedupLua)
//	          trigger key       ARGV[6] -> the far horizon, ms (see promoteScript)
//	                            ARGV[7] -> n, the attempt armed
//	                            ARGV[8] -> this call's token
//	                            ARGV[2+7k..8+7k] -> notice k's payload, due-index
//	                                       member, due time (Unix ms), dedup
//	                                       route and member, id, and bucket
//	                                       hash (recordHash)
//
// An attempt due beyond the far horizon is not put in the due index: its
// payload in the table carries its due time instead (rec_farv) until
// promoteScript moves it there.
//
// The notices' own payload keys (a large payload, a cancelled notice's
// tombstone) are read with one MGET at the start, rather than a GET per
// notice: a redis.call costs more than the lookup it makes. A notice this
// call stored is remembered in the script (mine), since a payload stored
// under its own key is not in that MGET's answer. A key of another type
// there (only a foreign writer makes one) reads as none, as MGET answers
// nil for it: the notice is stored, where a GET failed it with WRONGTYPE.
//
// Returns one code per notice, in order: 1 stored; 0 if a notice with this
// id is pending (an earlier one of the same call included); 2 if one was
// delivered within the dedup window. Nothing is written for a notice but
// for 1. A given-up or cancelled id may be enqueued again: it was never
// delivered, so sending it is no duplicate. A re-sent delivered id stays
// remembered as delivered: it was. A command failing part-way ends the
// call as batchLua says, with what the notices before it stored complete.
//
// A call that wrote anything (stored a notice, or failed part-way) leaves
// its answers in the receipts hash, under its token, as one character per
// notice (then '|' and the error's text after a failure part-way). A call
// sent again after its reply was lost finds them and answers them again,
// writing nothing, with 3 for each notice its first send stored: that
// notice may have been delivered, given up or cancelled since, and is
// neither stored again nor called a duplicate. A call sent again that finds
// no receipt never ran, or wrote nothing, and runs. The receipt is written
// with redis.pcall: a receipt that cannot be written (a full Redis refusing
// it, say) costs a re-send its answers, never the answers of this reply.
var enqueueScript = newScript(batchLua + pxUntil + dedupLua + recordsLuaSrc + `
local items = (#KEYS - 5) / 2
if ARGV[3] == '1' then
  local sent = redis.call('HGET', KEYS[3], ARGV[8])
  if sent then
    local out, back = {}, {['1'] = 3, ['0'] = 0, ['2'] = 2, x = -1, ['-'] = -2}
    for k = 1, items do out[k] = back[string.sub(sent, k, k)] end
    if #sent > items then out[items + 1] = string.sub(sent, items + 2) end
    return out
  end
end
local now = now_ms()
local st = rec_state(KEYS[5])
local horizon, n = tonumber(ARGV[6]), tonumber(ARGV[7])
local live
local out, indexed, marks, fars, due_now = {}, {}, {}, 0, false
local ok, err = pcall(function()
  local held, mine = redis.call('MGET', unpack(batch_at(KEYS, 6, 2, items))), {}
  for k = 1, items do
    local a, key, trig = 1 + 7 * k, KEYS[4 + 2 * k], KEYS[5 + 2 * k]
    local payload, due, id = ARGV[a + 1], tonumber(ARGV[a + 3]), ARGV[a + 6]
    local r, cur = 1, nil
    local at = rec_find_st(st, id, ARGV[a + 7])
    if mine[id] or rec_exists(at) then r = 0 end
    if r == 1 then
      cur = held[k]
      if cur and string.sub(cur, 1, 1) ~= '!' then r = 0 end
    end
    if r == 1 and ARGV[1] ~= '1' then
      live = live or dedup_live(KEYS[4], ARGV[5], now)
      if dedup_seen_in(live, ARGV[a + 4], ARGV[a + 5]) then r = 2 end
    end
    if r == 1 then
      local px = px_until(due, now)
      if px > horizon and #payload + 9 <= rec_vmax then
        rec_store(st, at, key, rec_farv(payload, n, due), cur)
        if not marks[at.b] or due < marks[at.b] then marks[at.b] = due end
        fars = fars + 1
      else
        rec_store(st, at, key, payload, cur)
        indexed[#indexed + 1] = ARGV[a + 3]
        indexed[#indexed + 1] = ARGV[a + 2]
      end
      redis.call('SET', trig, '1', 'PX', px)
      if px <= 1 then due_now = true end
      mine[id] = true
    end
    out[k] = r
  end
end)
if st.dirty then rec_state_save(st) end
if #indexed > 0 then redis.call('ZADD', KEYS[1], unpack(indexed)) end
if fars > 0 then
  local m = {}
  for b, due in pairs(marks) do
    m[#m + 1] = string.format('%.0f', due)
    m[#m + 1] = b
  end
  redis.call('ZADD', KEYS[5] .. ':t', 'LT', unpack(m))
  redis.call('HINCRBY', KEYS[5], 'f', fars)
end
if due_now then wake(ARGV[2], KEYS[2]) end
out = batch_out(out, items, ok, err)
local sent, wrote, code = {}, false, {[0] = '0', [1] = '1', [2] = '2', [-1] = 'x', [-2] = '-'}
for k = 1, items do
  sent[k] = code[out[k]]
  if out[k] == 1 or out[k] == -1 then wrote = true end
end
if wrote then
  if not ok then sent[items + 1] = '|' .. out[items + 1] end
  redis.pcall('HSET', KEYS[3], ARGV[8], table.concat(sent))
  redis.pcall('PEXPIRE', KEYS[3], ARGV[4])
end
return out
`)

// A cancelled notice's payload is replaced by a tombstone for the dedup
// window, so that `cancel` and `status` can say it was cancelled. It starts
// with '!', which no payload does (a payload starts with its header).
// Cancelling is rare; delivered ids, which are not, are remembered in the
// compact sets of dedupLua instead.
const tombCancelled = "!cancelled"

// claimScript takes pending attempts of one shard for the workers, a batch
// like enqueueScript: the clock and the table's state are read, and the due
// index and the fired triggers written, once per call.
//
//	KEYS[1] -> due index        ARGV[1] -> lease, ms
//	KEYS[2] -> payload table    ARGV[2] -> lease end, Unix ms
//	KEYS[3k] -> attempt k's     ARGV[4k-1] -> attempt k's member
//	          payload key       ARGV[4k] -> its claim token
//	KEYS[1+3k] -> its lease key ARGV[4k+1] -> its notice id
//	KEYS[2+3k] -> its trigger   ARGV[4k+2] -> its bucket hash (recordHash)
//	          key
//
// Answers, for each attempt in order: {0} stale (the attempt is not
// pending: done, superseded, never existed, or re-armed for later than now
// by the server's clock, which a late duplicate of an old trigger must not
// claim early; a real expiry event always comes at or after the score,
// since the trigger's PX was computed from it on the same clock), {1} busy
// (another worker's lease is live), {2} orphan (indexed but the payload is
// gone: the entry is dropped), or {3, payload, score} claimed (score: when
// the attempt was armed to run, a string): the payload of an ended notice
// (a tombstone) makes the entry stale and drops it. The scores are read
// with one ZMSCORE for the whole call (an entry this call drops counts as
// gone for a later mention of it). The lease is taken
// first (SET NX is the busy test) and let go again if the attempt turns
// out not to be claimable. On a claim the member's score moves to the
// lease's end so the sweep leaves it alone until then, and a trigger key
// that has not fired yet is deleted (a sweep claimed it) so it cannot fire
// a second delivery later. An attempt named twice in one call is claimed
// once, and busy the second time. A command failing part-way ends the call
// as batchLua says; the sweep retries what it did not claim.
var claimScript = newScript(batchLua + recordsLuaSrc + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local st = rec_state(KEYS[2])
local out, leased, fired = {}, {}, {}
local items = (#KEYS - 2) / 3
local ok, err = pcall(function()
  local dues, dropped = redis.call('ZMSCORE', KEYS[1], unpack(batch_at(ARGV, 3, 4, items))), {}
  for k = 1, items do
    local b = 4 * k - 1
    local member, lease = ARGV[b], KEYS[3 * k + 1]
    local due = dues[k]
    if dropped[member] then due = false end
    if not due then
      out[k] = {0}
    elseif not redis.call('SET', lease, ARGV[b + 1], 'NX', 'PX', ARGV[1]) then
      out[k] = {1}
    elseif tonumber(due) > now + 5 then
      redis.call('DEL', lease)
      out[k] = {0}
    else
      local p = rec_load(st, KEYS[3 * k], ARGV[b + 2], ARGV[b + 3])
      if not p or string.sub(p, 1, 1) == '!' then
        redis.call('DEL', lease)
        redis.call('ZREM', KEYS[1], member)
        dropped[member] = true
        out[k] = {p and 0 or 2}
      else
        leased[#leased + 1] = ARGV[2]
        leased[#leased + 1] = member
        fired[#fired + 1] = KEYS[3 * k + 2]
        out[k] = {3, p, due}
      end
    end
  end
end)
if #leased > 0 then
  redis.call('ZADD', KEYS[1], unpack(leased))
  redis.call('UNLINK', unpack(fired))
end
return batch_out(out, items, ok, err)
`)

// completeScript ends claimed attempts of one shard: each either arms its
// notice's next attempt or removes the notice. A batch, like
// enqueueScript: the table's state, the clock and the dedup generation
// are read and written, and the next attempts added to the due index, once
// per call.
//
//	KEYS[1] -> due index        ARGV[1] -> the dedup window, ms (0: remember nothing)
//	KEYS[2] -> wake flag        ARGV[2] -> wake channel (a channel, not a key)
//	KEYS[3] -> dedup directory  ARGV[3] -> dedup sets' prefix (see dedupLua)
//	KEYS[4] -> payload table    ARGV[4] -> dedup generation length, ms
//	KEYS[2+3k] -> attempt k's   ARGV[5] -> the far horizon, ms
//	          payload key       ARGV[-4+10k..5+10k] -> attempt k's member, claim
//	KEYS[3+3k] -> its lease key            token, next attempt's member ('' to
//	KEYS[4+3k] -> its next                 remove the notice) and due time (Unix
//	          trigger key                  ms), '1' to remember the id as
//	                                       delivered when removing, dedup route
//	                                       and member, notice id, n of the next
//	                                       attempt, bucket hash (recordHash)
//
// A next attempt due beyond the far horizon is armed in the payload table,
// as enqueueScript does, when the payload is in a bucket.
//
// Returns one code per attempt: 1, or 0 if the claim was lost: another
// worker holds the lease, or the attempt is no longer pending. A lease that
// merely ran out with nobody taking over still completes, so a slow attempt
// is not repeated for nothing. A command failing part-way ends the call as
// batchLua says.
//
// The leases are read with one MGET at the start of the call, and those of
// the completed attempts deleted with one DEL at its end: two commands per
// call instead of a GET and a DEL per attempt, on every delivery. So the
// call judges every attempt by the leases as they were when it started
// (of the same notice completed twice in one call, by two claims, only
// the lease's holder completes). A lease of another type (only a foreign
// writer makes one) reads as none. The DEL runs after a failure part-way
// too, for the attempts completed before it.
var completeScript = newScript(batchLua + pxUntil + dedupLua + recordsLuaSrc + `
local now = now_ms()
local st = rec_state(KEYS[4])
local window, horizon = tonumber(ARGV[1]), tonumber(ARGV[5])
local gen
local out, indexed, due_now, freed = {}, {}, false, {}
local items = (#KEYS - 4) / 3
local ok, err = pcall(function()
  local held = redis.call('MGET', unpack(batch_at(KEYS, 6, 3, items)))
  for k = 1, items do
    local a, key, lease, trig = 10 * k - 5, KEYS[2 + 3 * k], KEYS[3 + 3 * k], KEYS[4 + 3 * k]
    local id, upcoming = ARGV[a + 8], ARGV[a + 3]
    local holder = held[k]
    local r = 1
    if holder and holder ~= ARGV[a + 2] then
      r = 0
    elseif redis.call('ZREM', KEYS[1], ARGV[a + 1]) == 0 then
      r = 0
    end
    if r == 1 and holder then freed[#freed + 1] = lease end
    if r == 1 and upcoming == '' then
      rec_remove_st(st, key, id, nil, ARGV[a + 10])
      if ARGV[a + 5] == '1' and window > 0 then
        gen = gen or dedup_gen(KEYS[3], now, tonumber(ARGV[4]), window)
        dedup_add(gen, ARGV[3], ARGV[a + 6], ARGV[a + 7], ` + dedupLimit + `)
      end
    elseif r == 1 then
      local due = tonumber(ARGV[a + 4])
      local px = px_until(due, now)
      local at, v, pos = nil, nil, nil
      if px > horizon then
        at = rec_find_st(st, id, ARGV[a + 10])
        v, pos = rec_at_get(at)
      end
      if v and #rec_plain(v) + 9 <= rec_vmax then
        rec_far_mark(at, due, rec_far(v))
        redis.call('LSET', at.bucket, pos + 1, rec_farv(v, tonumber(ARGV[a + 9]), due))
      else
        indexed[#indexed + 1] = ARGV[a + 4]
        indexed[#indexed + 1] = upcoming
      end
      redis.call('SET', trig, '1', 'PX', px)
      if px <= 1 then due_now = true end
    end
    out[k] = r
  end
end)
if #freed > 0 then redis.call('DEL', unpack(freed)) end
if st.dirty then rec_state_save(st) end
if gen then dedup_flush(gen) end
if #indexed > 0 then redis.call('ZADD', KEYS[1], unpack(indexed)) end
if due_now then wake(ARGV[2], KEYS[2]) end
return batch_out(out, items, ok, err)
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
