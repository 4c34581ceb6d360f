package notifier

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRunInOrder: parts stop last to first, whether ctx ends or a part
// fails, and each part's error comes back named.
func TestRunInOrder(t *testing.T) {
	var mu sync.Mutex
	var stopped []string
	part := func(name string, fail error) Part {
		return Part{Name: name, Run: func(ctx context.Context) error {
			if fail != nil {
				return fail
			}
			<-ctx.Done()
			mu.Lock()
			stopped = append(stopped, name)
			mu.Unlock()
			return nil
		}}
	}
	t.Run("StopsLastFirstWhenCtxEnds", func(t *testing.T) {
		stopped = nil
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- RunInOrder(ctx, part("redis", nil), part("log", nil), part("dispatcher", nil)) }()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("RunInOrder did not return")
		}
		if want := []string{"dispatcher", "log", "redis"}; !slices.Equal(stopped, want) {
			t.Errorf("stopped %v, want %v", stopped, want)
		}
	})
	t.Run("APartThatFailsStopsTheRest", func(t *testing.T) {
		stopped = nil
		boom := errors.New("boom")
		err := RunInOrder(context.Background(), part("redis", nil), part("log", boom), part("api", nil))
		if !errors.Is(err, boom) || err.Error() != "log: boom" {
			t.Errorf("err = %v, want log: boom", err)
		}
		if want := []string{"api", "redis"}; !slices.Equal(stopped, want) {
			t.Errorf("stopped %v, want %v", stopped, want)
		}
	})
}
