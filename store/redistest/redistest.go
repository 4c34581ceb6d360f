// Package redistest starts private redis-server processes for tests: each
// test gets its own server on a unix socket in a temporary directory, with
// the configuration it asks for, and the server is stopped when the test ends.
// Tests never skip for lack of Redis: a missing redis-server fails them with
// the package to install.
//
// StartCluster starts a Redis Cluster of such processes on local TCP ports
// instead (cluster.go: starting, killing and failing over; node.go: one
// node's process; topology.go: who serves which slots, from CLUSTER NODES).
package redistest

import (
	"context"
	"os"
	"testing"

	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server owned by one test.
type Server struct {
	*store.Server
	t testing.TB
}

// Start starts a redis-server with expired keyspace events on and the AOF
// on (appendfsync always unless extra says otherwise), plus any extra
// redis.conf lines. The socket lives in a short temporary directory, since
// unix socket paths are limited to about 100 bytes.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "rt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := store.StartServer(context.Background(), store.ServerConfig{Dir: dir, AppendFsync: "always", Extra: extra})
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return &Server{Server: s, t: t}
}

// Client returns a new client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.t.Helper()
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		s.t.Fatal(err)
	}
	c := redis.NewClient(opt)
	s.t.Cleanup(func() { c.Close() })
	return c
}
