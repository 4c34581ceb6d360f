package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rememberScript remembers one id as delivered, as completeScript does.
//
//	KEYS[1] -> dedup directory  ARGV[1..3] -> dedupRef   ARGV[4] -> generation ms
//	                            ARGV[5] -> window ms
var rememberScript = newScript(dedupLua + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gen = dedup_gen(KEYS[1], now, tonumber(ARGV[4]), tonumber(ARGV[5]))
dedup_add(gen, ARGV[1], ARGV[2], ARGV[3], ` + dedupLimit + `)
dedup_flush(gen)
return 1
`)

// remember remembers ids as delivered under r's dedup window.
func remember(t testing.TB, r *Redis, ids ...string) {
	t.Helper()
	w := r.dedupWindow()
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 1000)]
		ids = ids[len(batch):]
		calls := make([]scriptCall, len(batch))
		for i, id := range batch {
			calls[i] = scriptCall{rememberScript, []string{r.keys.DedupDir(id)},
				append(r.dedupRef(id), dedupGeneration(w).Milliseconds(), w.Milliseconds())}
		}
		if _, err := r.evalPipelined(context.Background(), calls); err != nil {
			t.Fatal(err)
		}
	}
}

func newDedupRedis(t *testing.T) (*Redis, *redis.Client) {
	t.Helper()
	return newInternalRedis(t, "no")
}

// newInternalRedis starts a private embedded redis-server (appendfsync as
// given) for a test of this package, and a Redis on it.
func newInternalRedis(t *testing.T, appendfsync string) (*Redis, *redis.Client) {
	t.Helper()
	dir := t.TempDir()
	srv, err := StartServer(context.Background(), ServerConfig{Dir: dir, AppendFsync: appendfsync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return NewRedis(rdb, "", nil), rdb
}

// TestDedupExact remembers enough ids to fill the trie's first two levels
// and checks that every one is found, that none of as many other ids is,
// that remembering twice changes nothing, and that every set stayed an
// intset (the compact encoding the memory goal rests on).
func TestDedupExact(t *testing.T) {
	r, rdb := newDedupRedis(t)
	ctx := context.Background()
	const n = 20000 // > 16 root sets x 511: the trie grows a level
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("order-%d", i)
	}
	remember(t, r, ids...)
	if got, err := r.RememberedDelivered(ctx); err != nil || got != n {
		t.Errorf("RememberedDelivered = %d, %v; want %d", got, err, n)
	}
	keysBefore := rdb.DBSize(ctx).Val()
	remember(t, r, ids[:500]...)
	if got := rdb.DBSize(ctx).Val(); got != keysBefore {
		t.Errorf("remembering ids again changed the key count: %d -> %d", keysBefore, got)
	}
	if got, _ := r.RememberedDelivered(ctx); got != n {
		t.Errorf("RememberedDelivered after remembering ids again = %d, want %d", got, n)
	}
	for i, id := range ids {
		if i%7 != 0 { // a sample keeps the test quick
			continue
		}
		if ok, err := r.Delivered(ctx, id); err != nil || !ok {
			t.Fatalf("Delivered(%s) = %v, %v; want true", id, ok, err)
		}
		other := fmt.Sprintf("other-%d", i)
		if ok, err := r.Delivered(ctx, other); err != nil || ok {
			t.Fatalf("Delivered(%s) = %v, %v; want false (never delivered)", other, ok, err)
		}
	}
	var deep bool
	iter := rdb.Scan(ctx, 0, r.keys.DedupNodes("")+"*", 1000).Iterator()
	sets := 0
	for iter.Next(ctx) {
		k := iter.Val()
		sets++
		if enc := rdb.ObjectEncoding(ctx, k).Val(); enc != "intset" {
			t.Errorf("set %s is encoded %s, want intset", k, enc)
		}
		if route := k[strings.LastIndexByte(k, ':')+1:]; len(route) >= 2 {
			deep = true
		}
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("set %s has no TTL (%v)", k, ttl)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if !deep {
		t.Errorf("no set below the trie's first level among %d sets: the test did not fill a node", sets)
	}
}

// TestDedupExpiry checks that an id is remembered for at least the window
// and is forgotten within about 1.5 windows.
func TestDedupExpiry(t *testing.T) {
	r, _ := newDedupRedis(t)
	r.DedupWindow = time.Second
	ctx := context.Background()
	start := time.Now()
	remember(t, r, "short-lived")
	for {
		ok, err := r.Delivered(ctx, "short-lived")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("still remembered after 30 s with a 1 s window")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The id was remembered after start, so its window cannot have ended
	// before start + 1 s; it may be forgotten up to 1.5 s after it was
	// remembered (plus the time expiry takes on a busy machine).
	if gone := time.Since(start); gone < time.Second {
		t.Errorf("forgotten after %v, before the 1 s window ended", gone)
	}
	if got, err := r.RememberedDelivered(ctx); err != nil || got != 0 {
		t.Errorf("RememberedDelivered after the window = %d, %v; want 0", got, err)
	}
}

// TestDedupWindowChange checks that a serve started with another dedup
// window still finds the ids remembered under the old one.
func TestDedupWindowChange(t *testing.T) {
	r, _ := newDedupRedis(t)
	r.DedupWindow = time.Hour
	remember(t, r, "before")
	r.DedupWindow = 3 * time.Hour
	remember(t, r, "after")
	for _, id := range []string{"before", "after"} {
		if ok, err := r.Delivered(context.Background(), id); err != nil || !ok {
			t.Errorf("Delivered(%s) = %v, %v; want true", id, ok, err)
		}
	}
}

// idsRoutedApart returns three ids (prefix, then a number) whose second's
// dedup route starts with a digit neither other's does, so that a key
// planted at that first node of a generation is met by the second's
// dedup lookup only; and routeStart, the first digit of an id's route.
func idsRoutedApart(prefix string) (ids []string, routeStart func(string) byte) {
	routeStart = func(id string) byte { route, _ := dedupDigest(id); return route[0] }
	ids = []string{prefix + "0"}
	for i := 1; len(ids) < 3; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		if routeStart(id) != routeStart(ids[len(ids)-1]) {
			ids = append(ids, id)
		}
	}
	return ids, routeStart
}
