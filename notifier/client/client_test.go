package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/client"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
)

// setup starts a redis-server for the test and returns a Client made by New
// on its URL, a store on the same Redis to look behind the Client, and a
// plain Redis client.
func setup(t *testing.T) (*client.Client, *store.Redis, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	c, err := client.New(context.Background(), client.Options{RedisURL: srv.URL()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	rdb := srv.Client()
	return c, store.NewRedis(rdb, "", nil), rdb
}

func mustSchedule(t *testing.T, list string) backoff.Schedule {
	t.Helper()
	s, err := backoff.Parse(list)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pending reads back what the store holds for id.
func pending(t *testing.T, q *store.Redis, id string) notifier.Notice {
	t.Helper()
	p, err := q.Pending(context.Background(), id)
	if err != nil {
		t.Fatalf("Pending(%s): %v", id, err)
	}
	return p.Notice
}

func TestEnqueue(t *testing.T) {
	ctx := context.Background()
	c, q, rdb := setup(t)

	t.Run("StoresPendingNoticeAndArmsTrigger", func(t *testing.T) {
		before := time.Now().Truncate(time.Millisecond)
		id, err := c.Enqueue(ctx, notifier.Notice{ID: "order-1", URL: "https://partner.example/notify",
			Body: []byte(`{"paid":true}`), Schedule: mustSchedule(t, "10s,20s")})
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		if id != "order-1" {
			t.Errorf("id = %q, want order-1", id)
		}
		state, err := c.State(ctx, id)
		if err != nil || state != notifier.StatePending {
			t.Fatalf("State = %q, %v; want pending", state, err)
		}
		n := pending(t, q, id)
		if n.Stamp.Before(before) || n.Stamp.After(time.Now()) || !n.Stamp.Equal(n.Stamp.Truncate(time.Millisecond)) {
			t.Errorf("stamp = %v, want a whole millisecond between %v and now", n.Stamp, before)
		}
		key := fmt.Sprintf("noticeId_%s_%d_1", id, n.Stamp.UnixMilli())
		ttl, err := rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > 10*time.Second {
			t.Errorf("PTTL %s = %v, want in (0, 10s]", key, ttl)
		}
		if string(n.Body) != `{"paid":true}` {
			t.Errorf("body = %q", n.Body)
		}
	})

	t.Run("GeneratesID", func(t *testing.T) {
		id, err := c.Enqueue(ctx, notifier.Notice{URL: "https://partner.example/notify"})
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		if !strings.HasPrefix(id, "n_") {
			t.Errorf("id = %q, want a notifier.NewID", id)
		}
		if state, err := c.State(ctx, id); err != nil || state != notifier.StatePending {
			t.Errorf("State = %q, %v; want pending", state, err)
		}
	})

	t.Run("RefusesDuplicate", func(t *testing.T) {
		n := notifier.Notice{ID: "order-dup", URL: "https://partner.example/notify"}
		if _, err := c.Enqueue(ctx, n); err != nil {
			t.Fatalf("first Enqueue: %v", err)
		}
		id, err := c.Enqueue(ctx, n)
		if !errors.Is(err, notifier.ErrDuplicate) {
			t.Errorf("second Enqueue: err = %v, want ErrDuplicate", err)
		}
		if id != "order-dup" {
			t.Errorf("id = %q, want order-dup even with the error", id)
		}
	})

	t.Run("RefusesInvalidURL", func(t *testing.T) {
		_, err := c.Enqueue(ctx, notifier.Notice{ID: "order-bad", URL: "ftp://partner.example/notify"})
		if !errors.Is(err, notifier.ErrInvalidNotice) {
			t.Errorf("err = %v, want ErrInvalidNotice", err)
		}
		if _, err := c.State(ctx, "order-bad"); !errors.Is(err, notifier.ErrNotFound) {
			t.Errorf("State: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		id, err := c.Enqueue(ctx, notifier.Notice{ID: "order-cancel", URL: "https://partner.example/notify",
			Schedule: mustSchedule(t, "10s")})
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		if err := c.Cancel(ctx, id); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if state, err := c.State(ctx, id); err != nil || state != notifier.StateCancelled {
			t.Errorf("State = %q, %v; want cancelled", state, err)
		}
		if err := c.Cancel(ctx, id); !errors.Is(err, notifier.ErrEnded) {
			t.Errorf("second Cancel: err = %v, want ErrEnded", err)
		}
		if err := c.Cancel(ctx, "never-enqueued"); !errors.Is(err, notifier.ErrNotFound) {
			t.Errorf("Cancel of unknown id: err = %v, want ErrNotFound", err)
		}
	})
}

func TestEnqueueBatch(t *testing.T) {
	ctx := context.Background()
	c, q, _ := setup(t)
	if _, err := c.Enqueue(ctx, notifier.Notice{ID: "taken", URL: "https://partner.example/notify"}); err != nil {
		t.Fatal(err)
	}

	ns := []notifier.Notice{
		{ID: "good-1", URL: "https://partner.example/1"},
		{ID: "bad", URL: "not a url"},
		{URL: "https://partner.example/2"}, // id generated
		{ID: "taken", URL: "https://partner.example/3"},
		{ID: "good-3", URL: "https://partner.example/4", Schedule: mustSchedule(t, "10s")},
	}
	errs, err := c.EnqueueBatch(ctx, ns)
	if err != nil {
		t.Fatalf("EnqueueBatch: %v", err)
	}
	if len(errs) != len(ns) {
		t.Fatalf("got %d errors, want one per notice (%d)", len(errs), len(ns))
	}
	if !errors.Is(errs[1], notifier.ErrInvalidNotice) {
		t.Errorf("errs[1] = %v, want ErrInvalidNotice", errs[1])
	}
	if !errors.Is(errs[3], notifier.ErrDuplicate) {
		t.Errorf("errs[3] = %v, want ErrDuplicate", errs[3])
	}
	if !strings.HasPrefix(ns[2].ID, "n_") {
		t.Errorf("ns[2].ID = %q, want the generated id filled in place", ns[2].ID)
	}
	for _, i := range []int{0, 2, 4} {
		if errs[i] != nil {
			t.Errorf("errs[%d] = %v, want nil", i, errs[i])
			continue
		}
		if state, err := c.State(ctx, ns[i].ID); err != nil || state != notifier.StatePending {
			t.Errorf("State(%s) = %q, %v; want pending", ns[i].ID, state, err)
		}
		if got := pending(t, q, ns[i].ID); !got.Stamp.Equal(ns[i].Stamp) {
			t.Errorf("stored stamp of %s = %v, want %v as filled in place", ns[i].ID, got.Stamp, ns[i].Stamp)
		}
	}

	t.Run("Empty", func(t *testing.T) {
		errs, err := c.EnqueueBatch(ctx, nil)
		if err != nil || len(errs) != 0 {
			t.Errorf("EnqueueBatch(nil) = %v, %v; want no errors", errs, err)
		}
	})
}

func TestPartnerResolution(t *testing.T) {
	ctx := context.Background()
	c, q, _ := setup(t)
	alipay := mustSchedule(t, "alipay")
	def := mustSchedule(t, "0,200ms,400ms")
	if err := q.SetDefaultSchedule(ctx, def); err != nil {
		t.Fatal(err)
	}
	summaries := map[string]notifier.PartnerSummary{
		"alipay": {Name: "alipay", URLPrefix: []string{"https://pay.example.com/"}, Schedule: "alipay"},
		"shop":   {Name: "shop", URLPrefix: []string{"https://shop.example.com/"}},
	}
	published := map[string]string{}
	for name, s := range summaries {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		published[name] = string(b)
	}
	if err := q.PublishPartners(ctx, published); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name        string
		n           notifier.Notice
		wantPartner string
		wantSched   backoff.Schedule
	}{
		{"ByURLPrefixWithPartnersSchedule",
			notifier.Notice{URL: "https://pay.example.com/notify"}, "alipay", alipay},
		{"NamedPartner",
			notifier.Notice{URL: "https://pay.example.com/other", Partner: "alipay"}, "alipay", alipay},
		{"OwnScheduleKept",
			notifier.Notice{URL: "https://pay.example.com/notify", Schedule: mustSchedule(t, "1s,2s")}, "alipay", mustSchedule(t, "1s,2s")},
		{"PartnerWithoutScheduleGetsServesDefault",
			notifier.Notice{URL: "https://shop.example.com/hook"}, "shop", def},
		{"NoPartnerGetsServesDefault",
			notifier.Notice{URL: "https://other.example.com/"}, "", def},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := c.Enqueue(ctx, tc.n)
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			got := pending(t, q, id)
			if got.Partner != tc.wantPartner {
				t.Errorf("partner = %q, want %q", got.Partner, tc.wantPartner)
			}
			if !slices.Equal(got.Schedule, tc.wantSched) {
				t.Errorf("schedule = %v, want %v", got.Schedule, tc.wantSched)
			}
		})
	}

	t.Run("NamedPartnerElsewhereIsInvalid", func(t *testing.T) {
		_, err := c.Enqueue(ctx, notifier.Notice{URL: "https://pay.example.com.evil.net/notify", Partner: "alipay"})
		if !errors.Is(err, notifier.ErrInvalidNotice) {
			t.Errorf("err = %v, want ErrInvalidNotice", err)
		}
	})

	t.Run("UnknownPartnerIsInvalid", func(t *testing.T) {
		_, err := c.Enqueue(ctx, notifier.Notice{URL: "https://pay.example.com/notify", Partner: "nope"})
		if !errors.Is(err, notifier.ErrInvalidNotice) || !errors.Is(err, notifier.ErrUnknownPartner) {
			t.Errorf("err = %v, want ErrInvalidNotice and ErrUnknownPartner", err)
		}
	})
}

func TestNew(t *testing.T) {
	ctx := context.Background()

	t.Run("RequiresURL", func(t *testing.T) {
		if _, err := client.New(ctx, client.Options{}); err == nil {
			t.Error("New with no RedisURL: want an error")
		}
	})
	t.Run("BadURL", func(t *testing.T) {
		if _, err := client.New(ctx, client.Options{RedisURL: "http://localhost:6379"}); err == nil {
			t.Error("New with an http URL: want an error")
		}
	})
	t.Run("BadURLHidesPassword", func(t *testing.T) {
		_, err := client.New(ctx, client.Options{RedisURL: "redis://:S3cretPass@127.0.0.1:notaport/0"})
		if err == nil || strings.Contains(err.Error(), "S3cretPass") || !strings.Contains(err.Error(), "invalid port") {
			t.Errorf("err = %v, want invalid port without the password", err)
		}
	})
	t.Run("ClusterURLIsRead", func(t *testing.T) {
		// As `notifier --redis` takes it: the URL is read, the seed is
		// dialled (and here refuses).
		_, err := client.New(ctx, client.Options{RedisURL: "redis+cluster://127.0.0.1:1,127.0.0.1:2"})
		if err == nil || errors.Is(err, store.ErrBadRedisURL) {
			t.Errorf("err = %v, want a dial error, not ErrBadRedisURL", err)
		}
	})
	t.Run("Unreachable", func(t *testing.T) {
		_, err := client.New(ctx, client.Options{RedisURL: "unix://" + t.TempDir() + "/none.sock"})
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("err = %v, want unreachable", err)
		}
	})

	srv := redistest.Start(t)
	t.Run("PrefixMatchesServe", func(t *testing.T) {
		c, err := client.New(ctx, client.Options{RedisURL: srv.URL(), Prefix: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id, err := c.Enqueue(ctx, notifier.Notice{URL: "https://partner.example/"})
		if err != nil {
			t.Fatal(err)
		}
		q := store.NewRedis(srv.Client(), "acme", nil)
		if state, err := q.State(ctx, id); err != nil || state != notifier.StatePending {
			t.Errorf("State under prefix acme = %q, %v; want pending", state, err)
		}
	})
	t.Run("CloseLeavesCallersClientOpen", func(t *testing.T) {
		rdb := srv.Client()
		if err := client.NewFromRedis(rdb, "").Close(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Errorf("Ping after Close: %v, want the caller's client still open", err)
		}
	})
}
