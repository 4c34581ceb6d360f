package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

var (
	_ notifier.RedisStatsReader = (*Redis)(nil)
	_ notifier.LogStatsReader   = (*SQLite)(nil)
)

// RedisStats reads used_memory and the key count of every master, and
// counts notifier's entries by kind: the due index, the parked sets, the
// fleet stream and the delivered ids remembered. It costs a few commands per shard, never a scan.
func (r *Redis) RedisStats(ctx context.Context) (notifier.RedisStats, error) {
	var st notifier.RedisStats
	if err := r.eachMaster(ctx, func(ctx context.Context, node redis.Cmdable) error {
		mem, err := usedMemory(ctx, node)
		if err != nil {
			return err
		}
		keys, err := node.DBSize(ctx).Result()
		if err != nil {
			return fmt.Errorf("dbsize: %w", err)
		}
		st.UsedMemory += mem
		st.Keys += keys
		return nil
	}); err != nil {
		return st, err
	}
	pipe := r.rdb.Pipeline()
	due := make([]*redis.IntCmd, r.keys.ShardCount())
	names := make([]*redis.StringSliceCmd, r.keys.ShardCount())
	for s := range r.keys.ShardCount() {
		due[s] = pipe.ZCard(ctx, r.keys.DueShard(s))
		names[s] = pipe.SMembers(ctx, r.keys.ParkedNames(s))
	}
	fleet := pipe.XLen(ctx, r.keys.Attempts())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return st, fmt.Errorf("count entries: %w", err)
	}
	pipe = r.rdb.Pipeline()
	var parked []*redis.IntCmd
	for s := range r.keys.ShardCount() {
		st.Pending += due[s].Val()
		for _, name := range names[s].Val() {
			parked = append(parked, pipe.ZCard(ctx, r.keys.ParkedIn(s, name)))
		}
	}
	st.FleetStream = fleet.Val()
	far, err := r.farCount(ctx)
	if err != nil {
		return st, err
	}
	st.Pending += far
	if len(parked) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return st, fmt.Errorf("count parked: %w", err)
		}
		for _, c := range parked {
			st.Parked += c.Val()
		}
	}
	n, err := r.RememberedDelivered(ctx)
	if err != nil {
		return st, err
	}
	st.DeliveredRemembered = &n
	return st, nil
}

// eachMaster calls fn for the one node of a single Redis, or for every
// master of a Redis Cluster, one at a time.
func (r *Redis) eachMaster(ctx context.Context, fn func(ctx context.Context, node redis.Cmdable) error) error {
	cc, ok := r.rdb.(*redis.ClusterClient)
	if !ok {
		return fn(ctx, r.rdb)
	}
	var mu sync.Mutex
	return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		if err := fn(ctx, node); err != nil {
			return fmt.Errorf("%s: %w", node.Options().Addr, err)
		}
		return nil
	})
}

// usedMemory reads used_memory from INFO memory.
func usedMemory(ctx context.Context, node redis.Cmdable) (int64, error) {
	info, err := node.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("info memory: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("info memory: used_memory %q: %w", v, err)
			}
			return n, nil
		}
	}
	return 0, errors.New("info memory: no used_memory")
}

// LogStats reads the sizes of the log's files and its oldest rows, with
// queries that read a row or two through the rowid or an index.
func (s *SQLite) LogStats(ctx context.Context) (notifier.LogStats, error) {
	var st notifier.LogStats
	var err error
	if st.FileBytes, err = fileSize(s.path); err != nil {
		return st, err
	}
	if st.WALBytes, err = fileSize(s.path + "-wal"); err != nil {
		return st, err
	}
	var first, last, startUS sql.NullInt64
	err = s.r.QueryRowContext(ctx, "SELECT min(seq), max(seq) FROM attempts").Scan(&first, &last)
	if err != nil {
		return st, fmt.Errorf("attempt log stats: %w", err)
	}
	if first.Valid {
		st.Attempts = last.Int64 - first.Int64 + 1
		err = s.r.QueryRowContext(ctx, "SELECT start_us FROM attempts WHERE seq = ?", first.Int64).Scan(&startUS)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return st, fmt.Errorf("attempt log stats: %w", err)
		}
		if startUS.Valid {
			st.OldestAttempt = time.UnixMicro(startUS.Int64)
		}
	}
	if s.version >= archiveVersion {
		var endedUS sql.NullInt64
		if err := s.r.QueryRowContext(ctx, "SELECT min(ended_us) FROM notices").Scan(&endedUS); err != nil {
			return st, fmt.Errorf("attempt log stats: %w", err)
		}
		if endedUS.Valid {
			st.OldestArchived = time.UnixMicro(endedUS.Int64)
		}
	}
	if p := s.pruner; p != nil {
		st.RetentionSteps = make([]uint64, len(p.steps))
		for i := range p.steps {
			st.RetentionSteps[i] = p.steps[i].Load()
		}
		st.RetentionStepsTotal = time.Duration(p.stepsNS.Load())
	}
	return st, nil
}

// fileSize is the size of the file at path; 0 without error if it does not
// exist (a WAL between checkpoints, say).
func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("attempt log stats: %w", err)
	}
	return fi.Size(), nil
}
