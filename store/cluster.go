package store

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// clusterPoll is how often listenCluster looks for masters that changed
// (a failover, a resharding, a node added).
const clusterPoll = 2 * time.Second

// listenCluster listens to every master of a Redis Cluster: expired events
// are node-local, and go-redis's own PSubscribe picks one random node. Each
// master gets its own subscription and canary; the master list is read
// again every clusterPoll and whenever a subscription ends, so a replica
// promoted by a failover is listened to within seconds, and each new
// subscription calls h.Ready so the caller sweeps for what fired unheard.
// Handlers are called from one goroutine per master.
func (r *Redis) listenCluster(ctx context.Context, cc *redis.ClusterClient, h notifier.Handlers) error {
	type sub struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	subs := map[string]*sub{}
	exited := make(chan *sub, 256)
	defer func() {
		for _, s := range subs {
			s.cancel()
		}
		for _, s := range subs {
			<-s.done
		}
	}()
	tick := time.NewTicker(clusterPoll)
	defer tick.Stop()
	for {
		cc.ReloadState(ctx)
		masters := map[string]*redis.Client{}
		var mu sync.Mutex
		err := cc.ForEachMaster(ctx, func(_ context.Context, n *redis.Client) error {
			mu.Lock()
			masters[n.Options().Addr] = n
			mu.Unlock()
			return nil
		})
		if err != nil && ctx.Err() == nil {
			r.log.Error("list cluster masters", "err", err)
		}
		for addr, s := range subs {
			select {
			case <-s.done: // ended on its own; its exit message may have been dropped
				delete(subs, addr)
			default:
			}
		}
		for addr, node := range masters {
			if subs[addr] != nil {
				continue
			}
			key, err := r.canaryFor(ctx, cc, addr)
			if err != nil {
				r.log.Error("canary for a master", "node", addr, "err", err)
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			s := &sub{cancel: cancel, done: make(chan struct{})}
			subs[addr] = s
			go func() {
				defer close(s.done)
				err := r.listenNode(sctx, node, key, h)
				if sctx.Err() == nil {
					r.log.Warn("subscription to a master ended; listening again", "node", addr, "err", err)
					select {
					case exited <- s:
					default: // the poll finds its done channel closed
					}
				}
			}()
			r.log.Info("listening to a master's expired events", "node", addr)
		}
		if err == nil {
			for addr, s := range subs {
				if _, ok := masters[addr]; !ok {
					s.cancel()
					<-s.done
					delete(subs, addr)
					r.log.Info("stopped listening to a node that is no longer a master", "node", addr)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case ended := <-exited:
			for addr, s := range subs {
				if s == ended { // not a newer subscription to the same node
					<-s.done
					delete(subs, addr)
				}
			}
			// Not at once: the node may be down until a failover.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// canaryFor returns a canary key that lives on the master at addr, so that
// its expired event proves that master's subscription alive.
func (r *Redis) canaryFor(ctx context.Context, cc *redis.ClusterClient, addr string) (string, error) {
	for i := range 4096 {
		key := r.keys.CanaryTagged(r.instance, "c"+strconv.Itoa(i))
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return "", fmt.Errorf("master for %s: %w", key, err)
		}
		if m.Options().Addr == addr {
			return key, nil
		}
	}
	return "", fmt.Errorf("no canary key lands on %s", addr)
}
