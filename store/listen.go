package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// ErrSubscriptionDead is returned by Listen when the liveness canary did
// not come back: the subscription forwards nothing (a half-dead connection,
// or keyspace events switched off). The caller listens again and sweeps.
var ErrSubscriptionDead = errors.New("expired-event subscription is not delivering")

// LastHeard is when Listen last had proof that its subscription delivers
// events (it subscribed, its canary came back, or any expired event
// arrived); zero if it never had. With the canary every CanaryInterval, a
// live subscription is never more than about CanaryInterval+CanaryDeadline
// old.
func (r *Redis) LastHeard() time.Time {
	if ns := r.heardAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// ForeignKeys counts expired events for keys that are not trigger keys of
// this prefix (other applications' keys, malformed keys).
func (r *Redis) ForeignKeys() uint64 { return r.foreign.Load() }

// Listen implements notifier.Events with a PSUBSCRIBE to the expired
// keyevent channel of the client's db, and a SUBSCRIBE to the wake channel.
// go-redis reconnects and resubscribes by itself; each resubscription calls
// h.Ready so the caller sweeps for events lost meanwhile.
func (r *Redis) Listen(ctx context.Context, h notifier.Handlers) error {
	if cc, ok := r.rdb.(*redis.ClusterClient); ok {
		return r.listenCluster(ctx, cc, h)
	}
	return r.listenNode(ctx, r.rdb, r.keys.Canary(r.instance), h)
}

// subscriber is what listenNode needs of a client: a node's own client on
// a cluster, the store's client otherwise.
type subscriber interface {
	PSubscribe(ctx context.Context, channels ...string) *redis.PubSub
}

// listenNode listens to one server's expired events, with a canary key
// that lives on that server.
func (r *Redis) listenNode(ctx context.Context, node subscriber, canaryKey string, h notifier.Handlers) error {
	expired := r.keys.ExpiredChannel(r.db)
	ps := node.PSubscribe(ctx, expired)
	defer ps.Close()
	// The confirmations are awaited with a deadline: a connection that
	// goes silent now would otherwise hang here, before the canary runs.
	confirm := max(2*r.CanaryDeadline, time.Second)
	if _, err := ps.ReceiveTimeout(ctx, confirm); err != nil {
		return fmt.Errorf("psubscribe %s: %w", expired, err)
	}
	if err := ps.Subscribe(ctx, r.keys.Wake()); err != nil {
		return fmt.Errorf("subscribe %s: %w", r.keys.Wake(), err)
	}
	if _, err := ps.ReceiveTimeout(ctx, confirm); err != nil {
		return fmt.Errorf("subscribe %s: %w", r.keys.Wake(), err)
	}
	h.Ready()
	r.heardAt.Store(time.Now().UnixNano())
	// A large buffer keeps Redis from cutting us off (it drops pubsub
	// clients 32 MB behind) while workers are saturated.
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(1 << 16))
	c := canary{key: canaryKey, next: time.Now()}
	tick := time.NewTicker(min(r.CanaryInterval, r.CanaryDeadline) / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := r.checkCanary(ctx, &c); err != nil {
				return err
			}
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "psubscribe" {
					r.log.Info("resubscribed to expired events", "channel", expired)
					h.Ready()
				}
			case *redis.Message:
				if m.Channel == r.keys.Wake() {
					if m.Payload == wakePartners {
						if h.Partners != nil {
							h.Partners()
						}
					} else {
						h.Wake()
					}
					continue
				}
				switch t, err := r.keys.ParseTrigger(m.Payload); {
				case m.Payload == c.key:
					c.sent, c.next = time.Time{}, time.Now().Add(r.CanaryInterval)
					r.heardAt.Store(time.Now().UnixNano())
				case r.keys.NonTrigger(m.Payload):
					// Our own bookkeeping (wake flags, other serves' canaries).
				case err != nil:
					r.foreign.Add(1)
					r.logged.Do(func() {
						r.log.Debug("ignoring expired keys that are not notifier triggers (logged once)", "key", m.Payload)
					})
				default:
					h.Fire(t)
				}
				// Any expired event proves the subscription alive. Taken
				// after Fire: while it blocked (workers busy) the loop
				// could not read, which says nothing about the connection.
				c.heard = time.Now()
				r.heardAt.Store(c.heard.UnixNano())
			}
		}
	}
}

// canary tracks the liveness probe of one subscription.
type canary struct {
	key  string
	sent time.Time // zero while no probe is out
	next time.Time
	// heard is when the last expired event of any key arrived: under a
	// backlog the probe waits its turn behind other events, which prove
	// the subscription alive just as well.
	heard time.Time
}

// checkCanary sends a probe when one is due, touches it so Redis expires it
// at once (without waiting for the expiry cycle), and declares the
// subscription dead when the probe's event is overdue. A dead subscription
// may mean keyspace events were switched off: they are switched back on if
// Redis allows it, and the outage is logged loudly either way.
func (r *Redis) checkCanary(ctx context.Context, c *canary) error {
	now := time.Now()
	switch {
	case c.sent.IsZero() && !now.Before(c.next):
		if err := r.rdb.Set(ctx, c.key, "", time.Millisecond).Err(); err == nil {
			c.sent = now
		}
	case c.sent.IsZero():
	case now.Sub(c.sent) > r.CanaryDeadline && now.Sub(c.heard) > r.CanaryDeadline:
		err := fmt.Errorf("%w: canary %s did not come back within %s", ErrSubscriptionDead, c.key, r.CanaryDeadline)
		if cerr := r.CheckEvents(ctx, false); errors.Is(cerr, ErrEventsOff) {
			r.log.Error("expired keyspace events are OFF: retries are only delivered by the sweep (about 2s late)", "err", cerr)
			if serr := r.CheckEvents(ctx, true); serr == nil {
				r.log.Error("switched expired keyspace events back on")
			}
		}
		return err
	default:
		_ = r.rdb.Exists(ctx, c.key).Err()
	}
	return nil
}
