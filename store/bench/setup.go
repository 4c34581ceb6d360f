package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// RunOn runs the benchmark as `notifier bench` does: on the Redis at
// redisURL (empty: a private redis-server in a temporary directory, removed
// afterwards), or, when clusterURL is set, the cluster scenarios on that
// Redis Cluster. cfg.Redis, cfg.Dir and cfg.Cluster are set here. A URL that
// cannot be used is an error wrapping store.ErrBadRedisURL.
func RunOn(ctx context.Context, redisURL, clusterURL string, cfg Config, out io.Writer) error {
	dir, err := os.MkdirTemp("", "notifier-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Dir = dir
	var rdb redis.UniversalClient
	if clusterURL != "" {
		if rdb, err = store.Connect(ctx, clusterURL); err != nil {
			return err
		}
		if _, ok := rdb.(*redis.ClusterClient); !ok {
			rdb.Close()
			return fmt.Errorf("%w: --cluster wants a redis+cluster:// URL", store.ErrBadRedisURL)
		}
		cfg.Cluster = true
	} else {
		if redisURL == "" {
			srv, err := store.StartServer(ctx, store.ServerConfig{Dir: filepath.Join(dir, "redis"), AppendOnly: "no"})
			if err != nil {
				return err
			}
			defer srv.Stop()
			redisURL = srv.URL()
		}
		opt, err := store.ParseURL(redisURL)
		if err != nil {
			return err
		}
		rdb = redis.NewClient(opt)
	}
	defer rdb.Close()
	if err := store.NewRedis(rdb, "", nil).CheckEvents(ctx, true); err != nil {
		return err
	}
	cfg.Redis = rdb
	return Run(ctx, cfg, out)
}
