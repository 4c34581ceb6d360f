package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

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
		if store.Ping("tcp", n.Addr) {
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
