package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestCluster(t *testing.T) {
	began := time.Now()
	t.Cleanup(func() { t.Logf("whole test took %v", time.Since(began).Round(time.Millisecond)) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c := StartCluster(t, 3, 1)
	t.Logf("cluster of 3 masters with 1 replica each ready after %v", time.Since(began).Round(time.Millisecond))
	client := c.Client()

	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(masters), 3; got != want {
		t.Fatalf("got %d masters, want %d", got, want)
	}
	// One key per master, each written and replicated before it is read.
	keyOf := map[*ClusterNode]string{}
	for i := 0; len(keyOf) < len(masters) && i < 1000; i++ {
		key := fmt.Sprintf("k%d", i)
		m, err := c.MasterOf(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := keyOf[m]; !ok {
			keyOf[m] = key
		}
	}
	for _, m := range masters {
		key, ok := keyOf[m]
		if !ok {
			t.Fatalf("no key of k0..k999 lands on master %s", m.Addr)
		}
		setReplicated(ctx, t, client, m, key, "v-"+key)
	}

	t.Run("ReadsKeysOfEveryMaster", func(t *testing.T) {
		for _, key := range keyOf {
			if got, err := client.Get(ctx, key).Result(); err != nil || got != "v-"+key {
				t.Errorf("GET %s = %q, %v; want %q", key, got, err, "v-"+key)
			}
		}
	})

	old := masters[0]
	key := keyOf[old]
	var promoted *ClusterNode
	t.Run("ReplicaTakesOverFromCrashedMaster", func(t *testing.T) {
		killed := time.Now()
		c.Kill(old)
		promoted, err = c.WaitFailover(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("failover took %v", time.Since(killed).Round(time.Millisecond))
		if promoted == old {
			t.Fatalf("WaitFailover returned the killed master %s", old.Addr)
		}
		if got, err := c.MasterOf(ctx, key); err != nil || got != promoted {
			t.Fatalf("MasterOf(%s) = %v, %v; want %s", key, got, err, promoted.Addr)
		}
		// go-redis keeps sending the slot to the dead master until its
		// state reloads: on a MOVED reply, on ReloadState, or after
		// ClusterStateReloadInterval (60 s by default).
		client.ReloadState(ctx)
		err := c.poll(ctx, func() error {
			mc, err := client.MasterForKey(ctx, key)
			if err != nil {
				return err
			}
			if got := mc.Options().Addr; got != promoted.Addr {
				return fmt.Errorf("client routes %s to %s, want %s", key, got, promoted.Addr)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := client.Get(ctx, key).Result(); err != nil || got != "v-"+key {
			t.Fatalf("GET %s after failover = %q, %v; want %q", key, got, err, "v-"+key)
		}
		err = client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			info, err := m.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: cluster_state is not ok", m.Options().Addr)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("RestartedMasterRejoinsAsReplica", func(t *testing.T) {
		if promoted == nil {
			t.Skip("no failover happened")
		}
		restarted := time.Now()
		c.Restart(old)
		rdb := redis.NewClient(&redis.Options{Addr: old.Addr, MaxRetries: -1})
		defer rdb.Close()
		want := fmt.Sprintf("master_port:%d", promoted.Port)
		err := c.poll(ctx, func() error {
			info, err := rdb.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "role:slave") || !strings.Contains(info, want) || !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("%s is not a synced replica of %s", old.Addr, promoted.Addr)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rejoined as a synced replica %v after restart", time.Since(restarted).Round(time.Millisecond))
	})
}

// setReplicated sets key on master m through the cluster client and waits
// until a replica has it: SET and WAIT 1 go down one connection to m.
func setReplicated(ctx context.Context, t *testing.T, client *redis.ClusterClient, m *ClusterNode, key, value string) {
	t.Helper()
	mc, err := client.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got := mc.Options().Addr; got != m.Addr {
		t.Fatalf("client routes %s to %s, MasterOf says %s", key, got, m.Addr)
	}
	var acked *redis.Cmd
	if _, err := mc.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, value, 0)
		acked = p.Do(ctx, "WAIT", 1, 5000) // replicas, timeout in ms
		return nil
	}); err != nil {
		t.Fatalf("SET %s; WAIT 1: %v", key, err)
	}
	if got, _ := acked.Int64(); got < 1 {
		t.Fatalf("WAIT 1 after SET %s: %d replicas acknowledged, want 1", key, got)
	}
}
