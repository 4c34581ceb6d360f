package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
)

// TestNoticeKeepsItsTraceContext: the enqueue span's traceparent is stored
// with the notice, so whichever serve makes an attempt joins its trace.
func TestNoticeKeepsItsTraceContext(t *testing.T) {
	srv := redistest.Start(t)
	r := store.NewRedis(srv.Client(), "", nil)
	ctx := context.Background()
	stamp := time.Now()
	traced := newNotice("traced", stamp, "1h")
	traced.Trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if errs, err := r.Enqueue(ctx, []notifier.Notice{traced, newNotice("plain", stamp, "1h")}); err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("enqueue: %v %v", errs, err)
	}
	for id, want := range map[string]string{"traced": traced.Trace, "plain": ""} {
		p, err := r.Pending(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Notice.Trace != want {
			t.Errorf("%s: Trace = %q, want %q", id, p.Notice.Trace, want)
		}
	}
}
