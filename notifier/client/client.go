package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
)

// Client enqueues notices into the Redis a notifier serve uses. It is safe
// for concurrent use; create one and reuse it.
type Client struct {
	rdb    redis.UniversalClient
	q      *store.Redis
	intake notifier.Intake
	owned  bool // New made rdb, so Close closes it
}

// Options configures New.
type Options struct {
	// RedisURL is the serve's Redis, in any form `notifier --redis` takes
	// (see store.Connect): redis://[user:password@]host:port/db,
	// rediss://..., unix:///path/to/redis.sock[?db=N],
	// redis+cluster://host:port,host:port (Redis Cluster) or
	// redis+sentinel://host:port,host:port/master. Required.
	RedisURL string
	// Prefix starts every Redis key; it must match the serve's --prefix.
	// Empty: "noticeId", the serve's default.
	Prefix string
}

// New connects to o.RedisURL and pings it, waiting at most 5 s (less if
// ctx ends sooner). The Client owns the connection: Close closes it. An
// unreadable URL is an error wrapping store.ErrBadRedisURL that does not
// contain the password.
func New(ctx context.Context, o Options) (*Client, error) {
	if o.RedisURL == "" {
		return nil, errors.New("client: Options.RedisURL is required")
	}
	rdb, err := store.Connect(ctx, o.RedisURL) // its errors hide the password
	if errors.Is(err, store.ErrBadRedisURL) {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if err != nil {
		return nil, err
	}
	c := NewFromRedis(rdb, o.Prefix)
	c.owned = true
	return c, nil
}

// NewFromRedis returns a Client on rdb, whose keys start with prefix (""
// means "noticeId"). It does not ping, and Close leaves rdb open: the
// caller owns it. A cluster client (*redis.ClusterClient) uses the sharded
// key layout a serve on the same cluster uses.
func NewFromRedis(rdb redis.UniversalClient, prefix string) *Client {
	q := store.NewRedis(rdb, prefix, nil)
	return &Client{rdb: rdb, q: q, intake: notifier.Intake{Queue: q, Published: q}}
}

// Enqueue stores n and arms its first attempt, as `notifier enqueue` does,
// and returns n's id. It fills what n leaves empty: the ID (a fresh
// notifier.NewID), the Partner (the published partner whose URL prefix
// matches, if any) and the Schedule (that partner's, else the default the
// serve published). The Stamp is always now, in whole milliseconds. A
// Schedule that n sets is kept, even with a partner.
//
// The error wraps notifier.ErrInvalidNotice if n cannot be stored (also
// when it names a partner the serve did not publish; that error wraps
// notifier.ErrUnknownPartner as well) and notifier.ErrDuplicate if a notice
// with its id is pending or was delivered within the dedup window (24 h by
// default; a gave-up or cancelled id may be enqueued again).
// notifier.ErrPublished if what the serve published (its partners) does
// not parse: the notice was not stored. Any other error is a Redis
// failure, after which the notice may or may not be stored; the id is
// returned with it, so State can tell, and enqueueing the notice again
// with that id is safe.
func (c *Client) Enqueue(ctx context.Context, n notifier.Notice) (string, error) {
	ns := []notifier.Notice{n}
	errs, err := c.EnqueueBatch(ctx, ns)
	if err != nil {
		return ns[0].ID, err
	}
	if errs[0] != nil {
		return ns[0].ID, errs[0]
	}
	return ns[0].ID, nil
}

// EnqueueBatch is Enqueue for many notices, pipelined in one round trip
// after reading the published partners and default schedule. It completes
// each element of ns in place (ID, Stamp, Partner, Schedule), so the caller
// learns the ids it generated.
//
// The first result holds one error per notice (nil if stored), as Enqueue
// would return it; a bad notice does not keep the others out. The second is
// a Redis failure: some notices may then have been stored, and enqueueing
// the same slice again is safe (those come back as duplicates).
func (c *Client) EnqueueBatch(ctx context.Context, ns []notifier.Notice) ([]error, error) {
	for i := range ns {
		if ns[i].ID == "" {
			ns[i].ID = notifier.NewID()
		}
	}
	if len(ns) == 0 {
		return []error{}, nil
	}
	errs, err := c.intake.Enqueue(ctx, ns)
	if errs == nil { // nothing was read or stored
		return make([]error, len(ns)), err
	}
	for i, e := range errs {
		// A partner the serve does not know makes the notice invalid here.
		if errors.Is(e, notifier.ErrUnknownPartner) {
			errs[i] = fmt.Errorf("%w: %w", notifier.ErrInvalidNotice, e)
		}
	}
	return errs, err
}

// State says what Redis knows of notice id: "pending" (or "parked", while
// its partner is paused) until it ends, then "delivered", "gave-up" or
// "cancelled" for the dedup window (24 h by default). It returns an error wrapping
// notifier.ErrNotFound when Redis knows nothing of id. The constants are
// notifier.StatePending and its siblings.
func (c *Client) State(ctx context.Context, id string) (notifier.State, error) {
	return c.q.State(ctx, id)
}

// Cancel ends pending notice id: no further attempt is made, and State
// reports "cancelled". An attempt already in flight is not recalled. It
// wraps notifier.ErrNotFound if Redis knows no such notice and
// notifier.ErrEnded if it already ended.
func (c *Client) Cancel(ctx context.Context, id string) error {
	return c.q.Cancel(ctx, id)
}

// Close closes the Redis connection if New opened it; a Client from
// NewFromRedis leaves its client open.
func (c *Client) Close() error {
	if !c.owned {
		return nil
	}
	return c.rdb.Close()
}
