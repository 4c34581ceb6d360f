package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/redis/go-redis/v9"
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
	// Every notice is due in two hours: beyond the far horizon, so its
	// attempt waits in the table (far) until promoted.
	far := true
	check := func(alive map[string]bool) {
		t.Helper()
		meta := rdb.HGetAll(ctx, table).Val()
		n, _ := strconv.Atoi(meta["n"])
		if n != len(alive) {
			t.Fatalf("table counts %d notices, want %d (meta %v)", n, len(alive), meta)
		}
		if f, _ := strconv.Atoi(meta["f"]); far && f != n || !far && f != 0 {
			t.Fatalf("table counts %d far notices of %d (far: %v)", f, n, far)
		}
		all, _ := rdb.Keys(ctx, table+":*").Result()
		var buckets []string
		for _, b := range all {
			if b != table+":t" {
				buckets = append(buckets, b)
			}
		}
		if len(alive) == 0 && len(all) != 0 {
			t.Errorf("keys left when empty: %v", all)
		}
		if len(alive) > 0 {
			avg := float64(n) / float64(len(buckets))
			if avg > 40 || avg < 10 {
				t.Errorf("%d notices in %d buckets (%.1f each), want 10 to 40", n, len(buckets), avg)
			}
		} else if len(buckets) != 0 {
			t.Errorf("buckets left when empty: %v", buckets)
		}
		for _, b := range buckets {
			if enc := rdb.ObjectEncoding(ctx, b).Val(); enc != "quicklist" && enc != "listpack" {
				t.Errorf("bucket %s is a %s (%d entries), want a list", b, enc, rdb.LLen(ctx, b).Val())
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
	// Promoting them all shows that the bucket times kept up with the
	// splits and merges: every far attempt is found, due when it was.
	r.FarHorizon = 3 * time.Hour
	if _, err := r.Overdue(ctx, time.Time{}, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	far = false
	due := stamp.Add(time.Hour).UnixMilli()
	for id := range alive {
		m := r.Keys().Member(notifier.Trigger{ID: id, Stamp: stamp, N: 1})
		if s, err := rdb.ZScore(ctx, r.Keys().Due(), m).Result(); err != nil || int64(s) != due {
			t.Fatalf("notice %s after promotion: due-index score %v, %v; want %d", id, s, err, due)
		}
	}
	if n := rdb.Exists(ctx, table+":t").Val(); n != 0 {
		t.Errorf("bucket times left after every far attempt was promoted")
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

// A notice stored by a release before the payload table (a JSON header
// line in a key of its own) is listed, shown, claimed and completed as it
// is: an upgrade needs no migration.
func TestPayloadOfAnEarlierRelease(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	tr := notifier.Trigger{ID: "old-1", Stamp: stamp, N: 1}
	legacy := fmt.Sprintf(`{"u":"http://127.0.0.1:9/old","h":{"X-Shop":["42"]},"s":[0,60000],"t":%d}`+"\n"+`{"paid":true}`, stamp.UnixMilli())
	rdb.Set(ctx, r.Keys().Payload(tr.ID), legacy, 0)
	rdb.ZAdd(ctx, r.Keys().DueOf(tr.ID), redis.Z{Score: float64(stamp.UnixMilli()), Member: r.Keys().Member(tr)})

	p, err := r.Pending(ctx, tr.ID)
	if err != nil || p.N != 1 || p.Notice.URL != "http://127.0.0.1:9/old" || string(p.Notice.Body) != `{"paid":true}` {
		t.Fatalf("Pending = %+v, %v", p, err)
	}
	var listed []string
	if err := r.EachPending(ctx, func(n notifier.PendingNotice) error {
		listed = append(listed, n.Notice.ID+" "+n.Notice.Header.Get("X-Shop"))
		return nil
	}); err != nil || len(listed) != 1 || listed[0] != "old-1 42" {
		t.Fatalf("EachPending = %v, %v", listed, err)
	}
	res, jobs, err := r.Claim(ctx, []notifier.Trigger{tr}, time.Minute)
	if err != nil || res[0] != notifier.Claimed || string(jobs[0].Notice.Body) != `{"paid":true}` {
		t.Fatalf("Claim = %v, %+v, %v", res, jobs, err)
	}
	if kept, err := r.Finish(ctx, jobs[0]); err != nil || !kept {
		t.Fatalf("Finish = %v, %v", kept, err)
	}
	if n := rdb.Exists(ctx, r.Keys().Payload(tr.ID)).Val(); n != 0 {
		t.Fatal("the earlier release's payload key outlived its notice")
	}
}

// A notice the previous release stored in its hash table (P:r) is refused
// as a duplicate while pending, shown, listed, claimed and completed as it
// is, and leaves nothing behind: an upgrade needs no migration.
func TestPayloadOfThePreviousTable(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	n := newNotice("prev-1", stamp, "0,60")
	if errs, err := r.Enqueue(ctx, []notifier.Notice{n}); err != nil || errs[0] != nil {
		t.Fatalf("Enqueue: %v %v", errs, err)
	}
	// Move its record where the previous release kept it.
	table := r.Keys().RecordsShard(0)
	v, err := rdb.LIndex(ctx, table+":0", 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, table+":0", table)
	rdb.HSet(ctx, "noticeId:r", "i", 0, "p", 0, "n", 1)
	rdb.HSet(ctx, "noticeId:r:0", n.ID, v)

	if errs, err := r.Enqueue(ctx, []notifier.Notice{n}); err != nil || !errors.Is(errs[0], notifier.ErrDuplicate) {
		t.Fatalf("Enqueue again = %v, %v; want a duplicate", errs, err)
	}
	p, err := r.Pending(ctx, n.ID)
	if err != nil || p.N != 1 || string(p.Notice.Body) != string(n.Body) {
		t.Fatalf("Pending = %+v, %v", p, err)
	}
	var listed []string
	if err := r.EachPending(ctx, func(p notifier.PendingNotice) error {
		listed = append(listed, p.Notice.ID)
		return nil
	}); err != nil || len(listed) != 1 || listed[0] != n.ID {
		t.Fatalf("EachPending = %v, %v", listed, err)
	}
	tr := notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 1}
	res, jobs, err := r.Claim(ctx, []notifier.Trigger{tr}, time.Minute)
	if err != nil || res[0] != notifier.Claimed || string(jobs[0].Notice.Body) != string(n.Body) {
		t.Fatalf("Claim = %v, %+v, %v", res, jobs, err)
	}
	if kept, err := r.Finish(ctx, jobs[0]); err != nil || !kept {
		t.Fatalf("Finish = %v, %v", kept, err)
	}
	if left := rdb.Keys(ctx, "noticeId:[rb]*").Val(); len(left) != 0 {
		t.Fatalf("left after the notice ended: %v", left)
	}
}
