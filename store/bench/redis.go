package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// afterReceipts is used memory once the enqueue receipts of k are gone, as
// they are a minute after each enqueue: it deletes them (UNLINK frees them
// in the background, so it waits for lazyfree_pending_objects to drain).
func afterReceipts(ctx context.Context, rdb redis.UniversalClient, k store.Keys) (int64, error) {
	unlinkMatching(ctx, rdb, k.ReceiptPattern())
	for range 100 {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil {
			return 0, fmt.Errorf("redis INFO memory: %w", err)
		}
		if infoField(info, "lazyfree_pending_objects") == "0" {
			break
		}
		time.Sleep(10 * time.Millisecond) // Redis's background free, polled
	}
	return usedMemory(ctx, rdb)
}

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
	unlinkMatching(ctx, rdb, k.Pattern())
}

// unlinkMatching deletes the keys matching pattern (on every master of a
// cluster).
func unlinkMatching(ctx context.Context, rdb redis.UniversalClient, pattern string) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			unlinkMatching(ctx, m, pattern)
			return nil
		})
		return
	}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 10000).Result()
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
