package store_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
)

// The payload table grows by splitting buckets as notices arrive and
// shrinks by merging them as notices leave; every notice stays readable
// throughout, buckets stay small listpacks, and an oversized payload keeps
// a key of its own.
func TestPayloadTableSplitsAndMerges(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	rdb.ConfigSet(ctx, "hash-max-listpack-value", "64") // Redis's default
	if ok, _ := r.TuneRecords(ctx, false); ok {
		t.Fatal("TuneRecords without leave to set: the default setting reported high enough")
	}
	if ok, was := r.TuneRecords(ctx, true); !ok || was != "64" {
		t.Fatalf("TuneRecords = %v, %q; want the setting raised on our own Redis", ok, was)
	}
	if ok, was := r.TuneRecords(ctx, false); !ok || was != "" {
		t.Fatalf("TuneRecords again = %v, %q; want it found high enough", ok, was)
	}
	const limit = 4096
	const count = 2000
	stamp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	ids := make([]string, count)
	for start := 0; start < count; start += 500 {
		batch := make([]notifier.Notice, 0, 500)
		for i := start; i < start+500; i++ {
			ids[i] = fmt.Sprintf("order-%05d", i)
			batch = append(batch, newNotice(ids[i], stamp, "3600"))
		}
		if _, err := r.Enqueue(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	big := newNotice("big", stamp, "3600")
	big.Body = []byte(strings.Repeat("b", limit+1))
	if errs, err := r.Enqueue(ctx, []notifier.Notice{big}); err != nil || errs[0] != nil {
		t.Fatalf("enqueue a large notice: %v %v", err, errs)
	}
	if n := rdb.Exists(ctx, r.Keys().Payload("big")).Val(); n != 1 {
		t.Fatalf("a payload over the bucket limit has no key of its own")
	}

	table := r.Keys().RecordsShard(0)
	check := func(alive map[string]bool) {
		t.Helper()
		meta := rdb.HGetAll(ctx, table).Val()
		n, _ := strconv.Atoi(meta["n"])
		if n != len(alive) {
			t.Fatalf("table counts %d notices, want %d (meta %v)", n, len(alive), meta)
		}
		buckets, _ := rdb.Keys(ctx, table+":*").Result()
		if len(alive) > 0 {
			avg := float64(n) / float64(len(buckets))
			if avg > 40 || avg < 10 {
				t.Errorf("%d notices in %d buckets (%.1f each), want 10 to 40", n, len(buckets), avg)
			}
		} else if len(buckets) != 0 {
			t.Errorf("buckets left when empty: %v", buckets)
		}
		for _, b := range buckets {
			if enc := rdb.ObjectEncoding(ctx, b).Val(); enc != "listpack" {
				t.Errorf("bucket %s is a %s (%d fields), want a listpack", b, enc, rdb.HLen(ctx, b).Val())
			}
		}
		for _, id := range ids {
			p := r.PayloadOf(ctx, id)
			if alive[id] != (p != "") {
				t.Fatalf("notice %s: payload %q, alive %v", id, p, alive[id])
			}
			if alive[id] && !strings.Contains(p, `"a":1`) {
				t.Fatalf("notice %s: payload %q is not its own", id, p)
			}
		}
	}
	alive := map[string]bool{}
	for _, id := range ids {
		alive[id] = true
	}
	check(alive)
	// Leaving, in an order unrelated to the buckets: merges.
	for i := count - 1; i >= 0; i -= 2 {
		if err := r.RemovePayload(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
		delete(alive, ids[i])
	}
	check(alive)
	for i := 0; i < count; i += 2 {
		if err := r.RemovePayload(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
		delete(alive, ids[i])
	}
	check(alive)
	if p := r.PayloadOf(ctx, "big"); len(p) <= limit {
		t.Fatalf("the large payload is %d bytes after the others left", len(p))
	}
}
