package notifier

import (
	"context"
	"errors"
	"time"
)

// completion is a worker's request to end its attempt, answered on reply.
type completion struct {
	c     Completion
	reply chan completed
}

type completed struct {
	kept bool
	err  error
}

// completer ends attempts for the workers, batching what is queued into one
// pipelined round trip: under load a single Redis call ends hundreds of
// attempts; when idle it adds no delay.
func (d *Dispatcher) completer(in <-chan completion) {
	const maxBatch = 256
	batch := make([]completion, 0, maxBatch)
	cs := make([]Completion, 0, maxBatch)
	for first := range in {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < maxBatch {
			select {
			case c, ok := <-in:
				if !ok {
					break drain
				}
				batch = append(batch, c)
			default:
				break drain
			}
		}
		cs = cs[:0]
		for _, c := range batch {
			cs = append(cs, c.c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		kept, err := d.Queue.Complete(ctx, cs)
		cancel()
		var partial *BatchErrors
		errors.As(err, &partial)
		for i, c := range batch {
			switch {
			case partial != nil && i < len(partial.Errs):
				c.reply <- completed{kept: kept[i], err: partial.Errs[i]}
			case err != nil:
				c.reply <- completed{err: err}
			default:
				c.reply <- completed{kept: kept[i]}
			}
		}
	}
}

// complete ends job's attempt through the completer.
func (d *Dispatcher) complete(c Completion) (bool, error) {
	reply := make(chan completed, 1)
	d.completions <- completion{c: c, reply: reply}
	r := <-reply
	return r.kept, r.err
}
