package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/client"
	"github.com/notifier/notifier/store"
)

// redisURL is the URL of a private redis-server started by TestMain for the
// examples, which cannot take a *testing.T (tests start their own with
// redistest.Start).
var redisURL string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ct")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := store.StartServer(context.Background(), store.ServerConfig{Dir: dir, AppendOnly: "no"})
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "start redis-server: %v\n", err)
		os.Exit(1)
	}
	redisURL = srv.URL()
	code := m.Run()
	_ = srv.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func Example() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Options{RedisURL: redisURL}) // e.g. "unix:///srv/notifier-data/redis.sock"
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	id, err := c.Enqueue(ctx, notifier.Notice{
		ID:   "order-123",
		URL:  "https://partner.example/notify",
		Body: []byte(`{"order":123,"paid":true}`),
		// No Schedule: its partner's, else the serve's default.
	})
	if err != nil {
		log.Fatal(err)
	}
	state, err := c.State(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(id)
	fmt.Println(state)
	// Output:
	// order-123
	// pending
}
