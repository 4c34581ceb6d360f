package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifier/notifier/store/redistest"
)

// TestDuplicateRacingDeliveryIsRefused runs the binary: while a notice's
// only attempt is on its way to a slow partner, and after it was
// delivered, enqueues of the same id are refused (exit 3, "pending" then
// "delivered"), never stored twice; once the dedup window has passed, the
// id is accepted again.
func TestDuplicateRacingDeliveryIsRefused(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	db := filepath.Join(t.TempDir(), "attempts.db")
	var posts atomic.Int64
	var answered atomic.Int64 // Unix ns of the first answer
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		time.Sleep(400 * time.Millisecond)
		answered.CompareAndSwap(0, time.Now().UnixNano())
	}))
	t.Cleanup(p.Close)
	const window = 3 * time.Second
	startServe(t, rdb, "--redis", srv.URL(), "--db", db, "--allow-private", "--dedup-window", "3")

	enqueue := func() (int, string) {
		code, _, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--id", "race-1", "--url", p.URL, "--schedule", "0")
		return code, errOut
	}
	if code, errOut := enqueue(); code != 0 {
		t.Fatalf("first enqueue = %d %q", code, errOut)
	}
	var pending, delivered int
	deadline := time.Now().Add(60 * time.Second)
	for delivered < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: %d refusals as pending, %d as delivered", pending, delivered)
		}
		code, errOut := enqueue()
		switch {
		case code == 3 && strings.Contains(errOut, "already pending"):
			pending++
		case code == 3 && strings.Contains(errOut, "already delivered"):
			if answered.Load() == 0 {
				t.Fatalf("refused as delivered before the partner answered: %q", errOut)
			}
			delivered++
		default:
			t.Fatalf("enqueue of the id while it is pending or just delivered = %d %q, want exit 3", code, errOut)
		}
	}
	if pending == 0 {
		t.Errorf("no enqueue was refused as pending: the race was not run")
	}
	// Accepted again once the window has passed; never before it.
	for {
		if time.Now().After(deadline) {
			t.Fatal("the id is still refused 60 s after its delivery, with a 3 s window")
		}
		code, errOut := enqueue()
		if code == 0 {
			if since := time.Since(time.Unix(0, answered.Load())); since < window {
				t.Errorf("accepted again %v after the delivery, within the %v window", since, window)
			}
			break
		}
		if code != 3 || !strings.Contains(errOut, "already delivered") {
			t.Fatalf("enqueue after the delivery = %d %q, want exit 3 'already delivered' until the window ends", code, errOut)
		}
		time.Sleep(100 * time.Millisecond) // a CLI run per 100 ms is plenty; the window is seconds
	}
	if n := posts.Load(); n > 2 {
		// One for the first enqueue, one for the enqueue accepted after the window.
		t.Errorf("the partner got %d POSTs, want at most 2", n)
	}
}
