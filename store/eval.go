package store

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// script is a Lua script with its source, which evalPipelined needs to
// send it with EVAL to a node that does not have it cached.
type script struct {
	src string
	*redis.Script
}

func newScript(src string) *script { return &script{src: src, Script: redis.NewScript(src)} }

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
// once (see noRetry). Calls that failed with NOSCRIPT (the node restarted,
// was promoted or flushed its scripts) did nothing, so they are sent again
// with EVAL, which also caches the script on that node; no other node has to
// answer for that. Each command carries its own result: on a cluster one
// master may be down while the others answer. The error is set only when no
// command got through; a command whose own error is not a reply from Redis
// may or may not have run.
func (r *Redis) evalPipelined(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	pipe := r.rdb.Pipeline()
	for i, c := range calls {
		cmds[i] = c.add(ctx, pipe, true)
	}
	_, err := pipe.Exec(ctx)
	var again []int
	for i := range cmds {
		if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		pipe := r.rdb.Pipeline()
		for _, i := range again {
			cmds[i] = calls[i].add(ctx, pipe, false)
		}
		_, err = pipe.Exec(ctx)
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

// isReplyError tells a command's error reply (reported per command) from a
// connection failure (which fails the whole pipeline).
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}
