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
	"syscall"
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

// ClusterNode is one redis-server of a Cluster. Its address, port and
// cluster node ID stay the same across Kill and Restart.
type ClusterNode struct {
	Addr string // "127.0.0.1:port"
	Port int
	ID   string // cluster node ID (CLUSTER MYID)

	conf string // redis.conf; nodes.conf and redis.log sit beside it
	rdb  *redis.Client

	mu     sync.Mutex // guards cmd and exited, replaced by Restart
	cmd    *exec.Cmd
	exited chan struct{}
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

// start runs redis-server on n.conf and waits until it answers PING.
func (n *ClusterNode) start(ctx context.Context, bin string) error {
	cmd := exec.Command(bin, n.conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if pingTCP(n.Addr) {
			return nil
		}
		select {
		case <-exited:
			tail := n.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("%s: %w: %s", n.Addr, errPortTaken, tail)
			}
			return fmt.Errorf("redis-server on %s exited at start: %s", n.Addr, tail)
		case <-deadline.C:
			n.kill()
			return fmt.Errorf("redis-server did not answer on %s within 10s: %s", n.Addr, n.logTail())
		case <-ctx.Done():
			n.kill()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// kill sends SIGKILL and waits for the process to end.
func (n *ClusterNode) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// running reports whether the node's process is alive.
func (n *ClusterNode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

func (n *ClusterNode) logTail() string {
	return store.LogTail(filepath.Join(filepath.Dir(n.conf), "redis.log"))
}

func pingTCP(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	n, _ := c.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "+PONG")
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

// Masters returns the masters serving slots, ordered by their first slot, as
// the first running node that answers sees them.
func (c *Cluster) Masters(ctx context.Context) ([]*ClusterNode, error) {
	view, _, err := c.anyView(ctx)
	if err != nil {
		return nil, err
	}
	var ms []clusterLine
	for _, l := range view {
		if l.master() && l.slots != "" {
			ms = append(ms, l)
		}
	}
	slices.SortFunc(ms, func(a, b clusterLine) int { return a.firstSlot() - b.firstSlot() })
	nodes := make([]*ClusterNode, len(ms))
	for i, l := range ms {
		if nodes[i], err = c.byID(l.id); err != nil {
			return nil, err
		}
	}
	return nodes, nil
}

// MasterOf returns the master serving the slot of key, as the first running
// node that answers sees it.
func (c *Cluster) MasterOf(ctx context.Context, key string) (*ClusterNode, error) {
	view, n, err := c.anyView(ctx)
	if err != nil {
		return nil, err
	}
	slot, err := n.rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster keyslot on %s: %w", n.Addr, err)
	}
	for _, l := range view {
		if l.master() && l.serves(int(slot)) {
			return c.byID(l.id)
		}
	}
	return nil, fmt.Errorf("no master serves slot %d of %q (seen from %s)", slot, key, n.Addr)
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

func (n *ClusterNode) clusterOK(ctx context.Context) error {
	info, err := n.rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("cluster info on %s: %w", n.Addr, err)
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("%s: cluster_state is not ok", n.Addr)
	}
	return nil
}

func (c *Cluster) byID(id string) (*ClusterNode, error) {
	for _, n := range c.nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node of this cluster has ID %s", id)
}

// anyView returns CLUSTER NODES from the first running node that answers.
func (c *Cluster) anyView(ctx context.Context) ([]clusterLine, *ClusterNode, error) {
	var errs []error
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		view, err := n.view(ctx)
		if err == nil {
			return view, n, nil
		}
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("no running node answers: %w", errors.Join(errs...))
}

// clusterLine is one line of CLUSTER NODES, without nodes that are failing
// or have no address.
type clusterLine struct {
	id       string
	flags    []string
	masterID string // "" for a master
	slots    string // "0-5460 5462", "" for a replica
}

func (l clusterLine) master() bool { return slices.Contains(l.flags, "master") }

func (l clusterLine) firstSlot() int {
	lo, _, _ := strings.Cut(strings.Fields(l.slots)[0], "-")
	n, _ := strconv.Atoi(lo)
	return n
}

func (l clusterLine) serves(slot int) bool {
	for _, r := range strings.Fields(l.slots) {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && a <= slot && slot <= b {
			return true
		}
	}
	return false
}

// view returns the nodes n knows as healthy, from CLUSTER NODES.
func (n *ClusterNode) view(ctx context.Context) ([]clusterLine, error) {
	out, err := n.rdb.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster nodes on %s: %w", n.Addr, err)
	}
	var view []clusterLine
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		l := clusterLine{id: f[0], flags: strings.Split(f[2], ",")}
		if slices.ContainsFunc(l.flags, func(s string) bool { return s == "fail" || s == "fail?" || s == "noaddr" || s == "handshake" }) {
			continue
		}
		if f[3] != "-" {
			l.masterID = f[3]
		}
		var slots []string
		for _, s := range f[8:] {
			if !strings.HasPrefix(s, "[") { // "[slot->-id]": a slot being migrated
				slots = append(slots, s)
			}
		}
		l.slots = strings.Join(slots, " ")
		view = append(view, l)
	}
	return view, nil
}
