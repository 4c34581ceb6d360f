package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/notifier/notifier/notifier"
)

var _ notifier.PortalQueue = (*Redis)(nil)
var _ notifier.PortalLog = (*SQLite)(nil)

// StoredNotice returns the notice id Redis holds until it ends, pending or
// parked, with its body: what the partner portal hands a partner that
// pulls it. It wraps notifier.ErrNotFound if Redis holds no such notice
// (or only its tombstone).
func (r *Redis) StoredNotice(ctx context.Context, id string) (notifier.Notice, error) {
	p, err := r.readPayload(ctx, id)
	switch {
	case errors.Is(err, redis.Nil):
		return notifier.Notice{}, fmt.Errorf("notice %s: %w", id, notifier.ErrNotFound)
	case err != nil:
		return notifier.Notice{}, fmt.Errorf("read notice %s: %w", id, err)
	case isTombstone(p):
		return notifier.Notice{}, fmt.Errorf("notice %s: %s: %w", id, p[1:], notifier.ErrNotFound)
	}
	return decodePayload(id, p)
}
