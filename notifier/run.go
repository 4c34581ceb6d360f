package notifier

import (
	"context"
	"errors"
	"fmt"
)

// Part is one long-running component of a process: it runs until its
// context ends, then stops and returns.
type Part struct {
	Name string
	Run  func(ctx context.Context) error
}

// RunInOrder runs parts, each in a goroutine of its own, started first to
// last. When ctx ends or any part returns, the parts are stopped last to
// first: a part's context is cancelled only once every part after it has
// returned, so what later parts depend on (a store, the attempt log) outlives
// them and takes their last writes. It returns when every part has, with
// the parts' errors joined, each named.
func RunInOrder(ctx context.Context, parts ...Part) error {
	type running struct {
		cancel context.CancelFunc
		done   chan error
	}
	rs := make([]running, len(parts))
	anyDone := make(chan struct{}, len(parts))
	for i, p := range parts {
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		rs[i] = running{cancel: cancel, done: make(chan error, 1)}
		go func() {
			err := p.Run(pctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", p.Name, err)
			}
			rs[i].done <- err
			anyDone <- struct{}{}
		}()
	}
	select {
	case <-ctx.Done():
	case <-anyDone:
	}
	var errs []error
	for i := len(rs) - 1; i >= 0; i-- {
		rs[i].cancel()
		errs = append(errs, <-rs[i].done)
	}
	return errors.Join(errs...)
}
