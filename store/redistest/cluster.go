package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// Cluster is a real local Redis Cluster of redis-server processes, owned by
// one test: every node listens on 127.0.0.1 on a port of its own, keeps its
// cluster config file in the cluster's temporary directory, and is killed
// when the test ends.
type Cluster struct {
	t     testing.TB
	dir   string
	bin   string
	nodes []*ClusterNode

	mu     sync.Mutex
	killed map[string]shard // by node ID: what a master served when Kill crashed it
}

// shard is a master's slots and replicas as the master itself saw them.
type shard struct {
	slots    string // ranges as CLUSTER NODES lists them, "0-5460"
	replicas []string
}

// clusterTimeout bounds StartCluster and each wait of Kill and Restart.
const clusterTimeout = 60 * time.Second

// errPortTaken says a node could not bind a port found free a moment
// earlier: another process took it in between.
var errPortTaken = errors.New("port taken")

// StartCluster starts masters*(1+replicasPerMaster) redis-servers with
// cluster-enabled yes on free ports of 127.0.0.1, joins them with
// redis-cli --cluster create, and returns once every node reports
// cluster_state:ok, every node sees the same masters and replicas, and
// every replica's link to its master is up. Each node runs with
// cluster-node-timeout 1000, appendonly no, save "", notify-keyspace-events
// Ex and protected-mode no; extraConf lines come last and override them.
// redis-cli needs at least three masters. A missing redis-server or
// redis-cli fails the test. The processes are killed and the directory
// removed when the test ends.
func StartCluster(t testing.TB, masters, replicasPerMaster int, extraConf ...string) *Cluster {
	t.Helper()
	if masters < 3 || replicasPerMaster < 0 {
		t.Fatalf("StartCluster(%d, %d): redis-cli --cluster create needs at least 3 masters and replicas >= 0", masters, replicasPerMaster)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server)")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli not found on PATH: install it (Debian/Ubuntu: apt-get install redis-tools)")
	}
	dir, err := os.MkdirTemp("", "rc")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, dir: dir, bin: bin, killed: map[string]shard{}}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Cleanup(c.stop)

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	for i := range masters * (1 + replicasPerMaster) {
		n, err := c.startNode(ctx, filepath.Join(dir, strconv.Itoa(i)), extraConf)
		if err != nil {
			t.Fatalf("start cluster node %d: %v", i, err)
		}
		c.nodes = append(c.nodes, n)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitReady(ctx, masters, masters*replicasPerMaster); err != nil {
		t.Fatalf("cluster not ready: %v", err)
	}
	return c
}

// startNode writes dir/redis.conf and starts a node on fresh free ports,
// trying new ones when another process takes them before redis-server binds.
func (c *Cluster) startNode(ctx context.Context, dir string, extra []string) (*ClusterNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var err error
	for range 5 {
		var ports []int
		ports, err = freePorts(2)
		if err != nil {
			return nil, err
		}
		n := &ClusterNode{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), Port: ports[0], conf: filepath.Join(dir, "redis.conf")}
		conf := []string{
			"bind 127.0.0.1",
			"port " + strconv.Itoa(ports[0]),
			"cluster-port " + strconv.Itoa(ports[1]),
			"protected-mode no",
			"daemonize no",
			"dir " + store.ConfQuote(dir),
			"logfile " + store.ConfQuote(filepath.Join(dir, "redis.log")),
			"cluster-enabled yes",
			"cluster-config-file " + store.ConfQuote(filepath.Join(dir, "nodes.conf")),
			"cluster-node-timeout 1000",
			"appendonly no",
			`save ""`,
			"notify-keyspace-events Ex",
			"repl-diskless-sync-delay 0", // replicas sync at once, not after 5 s
		}
		conf = append(conf, extra...)
		for _, f := range []string{"redis.log", "nodes.conf"} { // left by an attempt that lost its port
			_ = os.Remove(filepath.Join(dir, f))
		}
		if err := os.WriteFile(n.conf, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			return nil, err
		}
		err = n.start(ctx, c.bin)
		if errors.Is(err, errPortTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		n.rdb = redis.NewClient(&redis.Options{
			Addr: n.Addr, Protocol: 2, DisableIdentity: true,
			DialTimeout: 250 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
			MaxRetries: -1, PoolSize: 2,
		})
		if n.ID, err = n.rdb.ClusterMyID(ctx).Result(); err != nil {
			n.kill()
			return nil, fmt.Errorf("cluster myid on %s: %w", n.Addr, err)
		}
		return n, nil
	}
	return nil, err
}

// freePorts returns k distinct TCP ports of 127.0.0.1 that were free a
// moment ago: the kernel picked them for listeners that are closed again.
func freePorts(k int) ([]int, error) {
	var ports []int
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) stop() {
	for _, n := range c.nodes {
		if n.rdb != nil {
			n.rdb.Close()
		}
		n.kill()
	}
}

// Addrs returns the host:port of every node, the seeds for a cluster client.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Client returns a new go-redis cluster client seeded with every node, with
// go-redis defaults, closed when the test ends. After a failover it keeps
// sending the old master's slots to the dead node until its state reloads
// (on a MOVED reply, on ReloadState, or every 60 s), so call ReloadState
// after WaitFailover.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// Kill crashes the node with SIGKILL and waits for the process to end. For a
// master it first notes its slots and replicas, for WaitFailover.
func (c *Cluster) Kill(n *ClusterNode) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	view, err := n.view(ctx)
	if err == nil {
		var s shard
		for _, l := range view {
			switch {
			case l.id == n.ID && l.master():
				s.slots = l.slots
			case l.masterID == n.ID:
				s.replicas = append(s.replicas, l.id)
			}
		}
		c.mu.Lock()
		c.killed[n.ID] = s
		c.mu.Unlock()
	}
	n.kill()
	if err != nil {
		c.t.Fatalf("kill %s: read its slots and replicas first: %v", n.Addr, err)
	}
}

// Restart starts a killed node again on its old ports with its old cluster
// config file and waits until it answers; it rejoins the cluster on its own,
// as a replica if it was failed over meanwhile.
func (c *Cluster) Restart(n *ClusterNode) {
	c.t.Helper()
	if n.running() {
		c.t.Fatalf("restart %s: it is still running", n.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := n.start(ctx, c.bin); err != nil {
		c.t.Fatalf("restart %s: %v", n.Addr, err)
	}
}

// WaitFailover waits until a replica of old, a master crashed by Kill,
// serves old's slots and every running node reports cluster_state:ok and
// agrees on it. It returns the new master, or an error when ctx ends first.
func (c *Cluster) WaitFailover(ctx context.Context, old *ClusterNode) (*ClusterNode, error) {
	c.mu.Lock()
	s, ok := c.killed[old.ID]
	c.mu.Unlock()
	if !ok || s.slots == "" {
		return nil, fmt.Errorf("wait failover of %s: not a master crashed by Kill", old.Addr)
	}
	if len(s.replicas) == 0 {
		return nil, fmt.Errorf("wait failover of %s: it had no replica", old.Addr)
	}
	var newID string
	err := c.poll(ctx, func() error {
		newID = ""
		for _, n := range c.nodes {
			if n == old || !n.running() {
				continue
			}
			if err := n.clusterOK(ctx); err != nil {
				return err
			}
			view, err := n.view(ctx)
			if err != nil {
				return err
			}
			var got string
			for _, l := range view {
				if l.master() && l.slots == s.slots {
					got = l.id
				}
			}
			switch {
			case got == "":
				return fmt.Errorf("%s sees no master serving %s", n.Addr, s.slots)
			case !slices.Contains(s.replicas, got):
				return fmt.Errorf("%s sees %s serving %s, not a replica of %s", n.Addr, got, s.slots, old.ID)
			case newID != "" && got != newID:
				return fmt.Errorf("nodes disagree on the master of %s: %s or %s", s.slots, newID, got)
			}
			newID = got
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait failover of %s: %w", old.Addr, err)
	}
	return c.byID(newID)
}

// waitReady waits until every node is ok and sees the same masters with
// slots and replicas with masters, and every replica's link is up.
func (c *Cluster) waitReady(ctx context.Context, masters, replicas int) error {
	return c.poll(ctx, func() error {
		var first string
		for _, n := range c.nodes {
			if err := n.clusterOK(ctx); err != nil {
				return err
			}
			view, err := n.view(ctx)
			if err != nil {
				return err
			}
			var ms, rs int
			var sig []string
			for _, l := range view {
				switch {
				case l.master() && l.slots != "":
					ms++
				case l.masterID != "":
					rs++
				}
				sig = append(sig, l.id+" "+l.masterID+" "+l.slots)
			}
			if ms != masters || rs != replicas {
				return fmt.Errorf("%s sees %d masters and %d replicas, want %d and %d", n.Addr, ms, rs, masters, replicas)
			}
			slices.Sort(sig)
			if s := strings.Join(sig, "\n"); first == "" {
				first = s
			} else if s != first {
				return fmt.Errorf("%s disagrees with %s on the topology", n.Addr, c.nodes[0].Addr)
			}
			info, err := n.rdb.Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Errorf("info replication on %s: %w", n.Addr, err)
			}
			if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("replica %s has not synced with its master", n.Addr)
			}
		}
		return nil
	})
}

// poll calls check every 20 ms until it returns nil, or returns its last
// error when ctx ends.
func (c *Cluster) poll(ctx context.Context, check func() error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
