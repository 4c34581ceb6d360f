package redistest

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Proxy forwards unix-socket connections to a Redis server and can make the
// pub/sub connections among them go silent while staying open: the failure
// go-redis's health check cannot see (it sends PING but never waits for the
// PONG), which only an application-level canary detects.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []*proxyConn
	// dropAfter, when set, freezes the next connection that forwards a
	// request containing it, from that request on (see DropRepliesAfter).
	dropAfter []byte
}

type proxyConn struct {
	mu             sync.Mutex
	pubsub, frozen bool
}

// NewProxy starts a proxy to the server at socket, closed when the test ends.
func NewProxy(t testing.TB, socket string) *Proxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "px")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "p.sock"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, ln: ln, target: socket}
	t.Cleanup(func() { ln.Close(); os.RemoveAll(dir) })
	go p.accept()
	return p
}

// DropRepliesAfter makes the next connection whose request contains
// substr (case-insensitive) go silent from that request on: Redis runs the
// request, and its reply, like everything after it on that connection, is
// dropped. The client sees a read timeout for a command that did run.
// Other connections, and connections opened later, work normally.
func (p *Proxy) DropRepliesAfter(substr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropAfter = bytes.ToLower([]byte(substr))
}

// URL is the proxy's address for go-redis.
func (p *Proxy) URL() string { return "unix://" + p.ln.Addr().String() }

// FreezePubSub silently drops everything Redis sends on the pub/sub
// connections open now. Connections opened later work normally.
func (p *Proxy) FreezePubSub() (frozen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.mu.Lock()
		if c.pubsub {
			c.frozen = true
			frozen++
		}
		c.mu.Unlock()
	}
	return frozen
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("unix", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		go func() { // client -> server, noting subscriptions
			defer server.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					lower := bytes.ToLower(buf[:n])
					if bytes.Contains(lower, []byte("subscribe")) {
						c.mu.Lock()
						c.pubsub = true
						c.mu.Unlock()
					}
					p.mu.Lock()
					if p.dropAfter != nil && bytes.Contains(lower, p.dropAfter) {
						p.dropAfter = nil
						c.mu.Lock()
						c.frozen = true
						c.mu.Unlock()
					}
					p.mu.Unlock()
					if _, werr := server.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // server -> client, unless frozen
			defer client.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 {
					c.mu.Lock()
					frozen := c.frozen
					c.mu.Unlock()
					if !frozen {
						if _, werr := client.Write(buf[:n]); werr != nil {
							return
						}
					}
				}
				if err != nil {
					if err != io.EOF {
						return
					}
					return
				}
			}
		}()
	}
}
