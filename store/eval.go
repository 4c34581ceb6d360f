package store

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// script is a Lua script with its source, which evalPipelined needs to
// send it with EVAL to a node that does not have it cached.
type script struct {
	src string
	*redis.Script
}

func newScript(src string) *script {
	src = pruneLua(src)
	return &script{src: src, Script: redis.NewScript(src)}
}

// oneLine tells a function defined on one line: it ends with " end" and
// opens no other block.
func oneLine(l string) bool {
	if !strings.HasSuffix(l, " end") || strings.Count(l, " end") != 1 {
		return false
	}
	for _, w := range []string{" then", " do", "function(", " repeat"} {
		if strings.Contains(l, w) {
			return false
		}
	}
	return true
}

// luaFunc matches the first line of a top-level Lua function definition.
var luaFunc = regexp.MustCompile(`^local function ([A-Za-z_][A-Za-z0-9_]*)\(`)

// pruneLua drops from src the top-level local functions that nothing left
// in it calls. The scripts share libraries of helpers (recordsLua, dedupLua,
// pxUntil), and Lua builds a closure for every local function each time a
// script runs: about 3 µs a call for the whole set, on the scripts every
// notice runs three of. A top-level function starts with a line "local
// function NAME(" and ends at the first line that is exactly "end", or
// on the same line if it is one simple statement (see oneLine).
func pruneLua(src string) string {
	lines := strings.Split(src, "\n")
	type block struct{ start, end int } // lines[start:end]
	funcs := make(map[string]block)
	var rest []string
	for i := 0; i < len(lines); i++ {
		m := luaFunc.FindStringSubmatch(lines[i])
		if m == nil {
			rest = append(rest, lines[i])
			continue
		}
		start := i
		if !oneLine(lines[i]) {
			for i < len(lines) && lines[i] != "end" {
				i++
			}
		}
		if i == len(lines) {
			return src // not the layout this understands: keep it whole
		}
		funcs[m[1]] = block{start, i + 1}
	}
	// From what the script runs outside the functions, follow the names
	// each function kept mentions.
	used := make(map[string]bool)
	todo := luaIdent.FindAllString(strings.Join(rest, "\n"), -1)
	for len(todo) > 0 {
		name := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		b, ok := funcs[name]
		if !ok || used[name] {
			continue
		}
		used[name] = true
		body := strings.Join(lines[b.start:b.end], "\n")
		body = body[strings.IndexByte(body, '(')+1:] // past its own name
		todo = append(todo, luaIdent.FindAllString(body, -1)...)
	}
	kept := make([]string, 0, len(lines))
	for i := 0; i < len(lines); i++ {
		if m := luaFunc.FindStringSubmatch(lines[i]); m != nil && !used[m[1]] {
			i = funcs[m[1]].end - 1
			continue
		}
		kept = append(kept, lines[i])
	}
	return strings.Join(kept, "\n")
}

// luaIdent matches a Lua name.
var luaIdent = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

type scriptCall struct {
	script *script
	keys   []string
	args   []any
}

// noRetry marks a script command that go-redis must never send twice. After
// an I/O timeout go-redis re-sends a whole pipeline on a fresh connection,
// although Redis may have run every command of it already; for our scripts
// that would, for example, report a new notice as a duplicate of itself or
// claim an attempt twice. A failed script call is reported instead, and its
// caller decides what a re-send would mean.
type noRetry struct{ *redis.Cmd }

// NoRetry tells go-redis not to re-send the command.
func (noRetry) NoRetry() bool { return true }

// add queues one script call on pipe, as EVALSHA or (sha false) EVAL.
func (c scriptCall) add(ctx context.Context, pipe redis.Pipeliner, sha bool) *redis.Cmd {
	args := make([]any, 0, 3+len(c.keys)+len(c.args))
	if sha {
		args = append(args, "evalsha", c.script.Hash())
	} else {
		args = append(args, "eval", c.script.src)
	}
	args = append(args, len(c.keys))
	for _, k := range c.keys {
		args = append(args, k)
	}
	args = append(args, c.args...)
	cmd := redis.NewCmd(ctx, args...)
	if len(c.keys) > 0 {
		cmd.SetFirstKeyPos(3) // so a cluster client routes it by its first key
	}
	_ = pipe.Process(ctx, noRetry{cmd})
	return cmd
}

// evalPipelined runs calls in one round trip with EVALSHA, each sent at most
// once blindly (see noRetry). Calls that Redis refused without running
// them are sent again: NOSCRIPT (the node restarted, was promoted or
// flushed its scripts) with EVAL, which also caches the script on that node,
// so no other node has to answer for that; LOADING, TRYAGAIN, CLUSTERDOWN,
// MASTERDOWN and READONLY (a node starting or failing over), and a pipeline
// that could not even connect, after a short pause, a few times. Each
// command carries its own result: on a cluster one master may be down while
// the others answer. The error is set only when no command got through; a
// command whose own error is not a reply from Redis may or may not have run.
func (r *Redis) evalPipelined(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	todo := make([]int, len(calls))
	for i := range todo {
		todo[i] = i
	}
	sha := true
	var err error
	for try := 0; ; try++ {
		pipe := r.rdb.Pipeline()
		for _, i := range todo {
			cmds[i] = calls[i].add(ctx, pipe, sha)
		}
		_, err = pipe.Exec(ctx)
		var again []int
		sha = true
		for _, i := range todo {
			switch e := cmds[i].Err(); {
			case redis.HasErrorPrefix(e, "NOSCRIPT"):
				again, sha = append(again, i), false
			case notRun(e) || notSent(e):
				again = append(again, i)
			}
		}
		if len(again) == 0 || try == len(notRunPauses) || ctx.Err() != nil {
			break
		}
		if sha { // only refusals that call for a pause
			select {
			case <-ctx.Done():
			case <-time.After(notRunPauses[try]):
			}
		}
		todo = again
	}
	if err == nil || isReplyError(err) {
		return cmds, nil
	}
	for _, c := range cmds {
		if c.Err() == nil || isReplyError(c.Err()) {
			return cmds, nil // some got through: callers judge each
		}
	}
	return nil, err
}

// notRunPauses are the pauses before sending again calls Redis refused
// without running them.
var notRunPauses = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond}

// notRun tells a reply that says the command was not run and may be sent
// again.
func notRun(err error) bool {
	for _, p := range []string{"LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// notSent tells a command that failed before it reached Redis: its
// connection could not be made.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isReplyError tells a command's error reply (reported per command) from a
// connection failure (which fails the whole pipeline).
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// The Lua fragments below are shared by several scripts (scripts.go),
// which put them before their own text.

// pxUntil defines now_ms(), the server's clock in Unix ms, and
// px_until(due, now): the PX that makes a key expire at due (Unix ms) by
// the server's own clock, read once per script as now, at least 1 ms (PX 0
// is an error). Computing it here rather than in the client keeps the round
// trip out of the TTL, so a key is expired exactly when its due-index score
// says.
//
// wake(channel, flag) publishes a wake hint, for a script that armed an
// attempt already due (PX 1), at most one per 2 ms, so the dispatchers'
// wakers touch it at once instead of at their next tick.
const pxUntil = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function px_until(due, now)
  local px = tonumber(due) - now
  if px < 1 then return 1 end
  return px
end
local function wake(channel, flag)
  if redis.call('SET', flag, '', 'NX', 'PX', 2) then
    redis.call('PUBLISH', channel, '')
  end
end
`

// batchLua defines batch_at(t, first, step, items), the items' entries of
// t (KEYS or ARGV) from index first, step apart, as a list to hand one
// command for the whole batch (MGET, ZMSCORE); and batch_out(out, items,
// ok, err), the reply of a script
// that handles items in a loop run under pcall, so that a command failing
// part-way (a bucket of another type in notifier's namespace, say) still lets
// the script write what it deferred for the items before, and say which
// they were: out as the loop left it when ok, else out, then -1 for the
// item the loop failed on, -2 for each it did not reach, then the error's
// text as one more element.
const batchLua = `
local function batch_at(t, first, step, items)
  local r = {}
  for k = 1, items do r[k] = t[first + step * (k - 1)] end
  return r
end
local function batch_out(out, items, ok, err)
  if ok then return out end
  out[#out + 1] = -1
  for k = #out + 1, items do out[k] = -2 end
  if type(err) == 'table' then err = err.err end
  out[items + 1] = tostring(err)
  return out
end
`
