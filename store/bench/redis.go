package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO memory: %w", err)
	}
	return strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// cleanup deletes the benchmark's keys, and only those (on every master of
// a cluster).
func cleanup(ctx context.Context, rdb redis.UniversalClient, k store.Keys) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			cleanup(ctx, m, k)
			return nil
		})
		return
	}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, k.Pattern(), 10000).Result()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench cleanup:", err)
			return
		}
		if len(keys) > 0 {
			// One key per command: a cluster node refuses multi-key
			// commands across slots.
			pipe := rdb.Pipeline()
			for _, k := range keys {
				pipe.Unlink(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "bench cleanup:", err)
				return
			}
		}
		if cursor = next; cursor == 0 {
			return
		}
	}
}
