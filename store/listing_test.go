package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/redis/go-redis/v9"
)

// readCounter is a go-redis hook that counts what commands read: the bytes
// of GET and GETRANGE replies, and the longest pipeline.
type readCounter struct {
	mu       sync.Mutex
	names    map[string]int
	bytes    int
	longest  int
	counting bool
}

func (h *readCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *readCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.record([]redis.Cmder{cmd})
		return err
	}
}

func (h *readCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.record(cmds)
		return err
	}
}

func (h *readCounter) record(cmds []redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.counting {
		return
	}
	h.longest = max(h.longest, len(cmds))
	for _, c := range cmds {
		h.names[c.Name()]++
		if s, ok := c.(*redis.StringCmd); ok {
			h.bytes += len(s.Val())
		}
	}
}

func (h *readCounter) start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.names, h.bytes, h.longest, h.counting = map[string]int{}, 0, 0, true
}

// TestEachPendingReadsHeadersOnly: listing pending notices reads each
// payload's header line, never its body, a bounded page at a time, and
// stops reading when the caller has enough.
func TestEachPendingReadsHeadersOnly(t *testing.T) {
	const notices, bodySize = 3*store.ListPage + 7, 64 << 10
	srv := redistest.Start(t)
	rdb := srv.Client()
	reads := &readCounter{}
	rdb.AddHook(reads)
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Truncate(time.Millisecond)
	body := bytes.Repeat([]byte("b"), bodySize)
	// One header longer than the first range read, so it takes several.
	long := http.Header{"X-Long": {strings.Repeat("h", 12<<10)}}
	var batch []notifier.Notice
	for i := range notices {
		n := notifier.Notice{ID: fmt.Sprintf("n-%03d", i), URL: "http://partner.example/hook", Body: body,
			Schedule: backoff.Schedule{time.Hour, 2 * time.Hour}, Stamp: stamp}
		if i == 5 {
			n.Header = long
		}
		batch = append(batch, n)
	}
	if errs, err := r.Enqueue(ctx, batch); err != nil || errors.Join(errs...) != nil {
		t.Fatalf("enqueue: %v %v", err, errs)
	}

	t.Run("EveryNoticeWithoutItsBody", func(t *testing.T) {
		reads.start()
		seen := map[string]bool{}
		err := r.EachPending(ctx, func(p notifier.PendingNotice) error {
			if p.Notice.Body != nil {
				t.Errorf("%s: body of %d bytes, want none", p.Notice.ID, len(p.Notice.Body))
			}
			if p.Notice.URL != "http://partner.example/hook" || !p.Notice.Stamp.Equal(stamp) || p.N != 1 ||
				!p.Due.Equal(stamp.Add(time.Hour)) || len(p.Notice.Schedule) != 2 {
				t.Errorf("listed %+v", p)
			}
			if p.Notice.ID == "n-005" && p.Notice.Header.Get("X-Long") != long.Get("X-Long") {
				t.Errorf("n-005's long header came back as %d bytes", len(p.Notice.Header.Get("X-Long")))
			}
			seen[p.Notice.ID] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != notices {
			t.Errorf("listed %d notices, want %d", len(seen), notices)
		}
		if reads.names["get"] > 0 {
			t.Errorf("%d GETs of whole payloads", reads.names["get"])
		}
		if limit := notices * 2 << 10; reads.bytes > limit+len(long.Get("X-Long"))*2 {
			t.Errorf("read %d bytes of payloads for %d notices, want about their headers (under %d)", reads.bytes, notices, limit)
		}
		if reads.longest > store.ListPage {
			t.Errorf("a pipeline of %d commands, want at most %d (one page)", reads.longest, store.ListPage)
		}
	})

	t.Run("StopsWhenTheCallerHasEnough", func(t *testing.T) {
		reads.start()
		enough := errors.New("enough")
		got := 0
		err := r.EachPending(ctx, func(notifier.PendingNotice) error {
			got++
			return enough
		})
		if !errors.Is(err, enough) || got != 1 {
			t.Fatalf("EachPending = %v after %d notices, want the caller's error after 1", err, got)
		}
		if n := reads.names["getrange"]; n > store.ListPage+3 {
			t.Errorf("%d header reads to list one notice, want at most one page (%d)", n, store.ListPage)
		}
	})

	t.Run("StatusAndCancelReadNoBody", func(t *testing.T) {
		reads.start()
		p, err := r.PendingHeader(ctx, "n-005")
		if err != nil || p.Notice.Body != nil || p.N != 1 || p.Notice.Header.Get("X-Long") == "" {
			t.Fatalf("PendingHeader = %+v, %v", p, err)
		}
		if st, err := r.State(ctx, "n-005"); err != nil || st != notifier.StatePending {
			t.Fatalf("State = %q, %v", st, err)
		}
		if err := r.Cancel(ctx, "n-006"); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if st, err := r.State(ctx, "n-006"); err != nil || st != notifier.StateCancelled {
			t.Fatalf("State after Cancel = %q, %v", st, err)
		}
		if reads.names["get"] > 0 || reads.bytes > 64<<10 {
			t.Errorf("%d GETs, %d bytes read: want headers only", reads.names["get"], reads.bytes)
		}
		if _, err := r.Pending(ctx, "n-005"); err != nil {
			t.Fatal(err)
		}
		if p, _ := r.Pending(ctx, "n-007"); len(p.Notice.Body) != bodySize {
			t.Errorf("Pending's body is %d bytes, want the whole %d", len(p.Notice.Body), bodySize)
		}
	})
}
