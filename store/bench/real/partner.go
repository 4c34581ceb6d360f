package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// retryPrefix marks the notices of the lateness scenarios: the partner
// answers their first attempt with 503, so their second is a real retry
// armed by serve's own schedule.
const retryPrefix = "retry-"

// arrival is one retry as the partner saw it: when it was received, in
// Unix microseconds.
type arrival struct {
	ID     string `json:"id"`
	N      int    `json:"n"`
	RecvUS int64  `json:"recv_us"`
}

// partnerStats is what GET /stats reports since the last reset.
type partnerStats struct {
	Arrived int64 `json:"arrived"`
	FirstNS int64 `json:"first_ns"`
	LastNS  int64 `json:"last_ns"`
	// Conns counts connections opened: a sender that does not reuse its
	// connections costs the partner (and itself) more per notice.
	Conns int64 `json:"conns"`
}

// partnerServer answers every POST at once. It counts arrivals, keeps the
// first and last arrival times (the throughput window), and records the
// receive time of every attempt after the first of a retry- notice, which
// the driver compares with the due time in serve's attempt log.
type partnerServer struct {
	mu       sync.Mutex
	stats    partnerStats
	arrivals []arrival
}

func (p *partnerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		p.mu.Lock()
		s := p.stats
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(s)
		return
	case r.Method == http.MethodGet && r.URL.Path == "/arrivals":
		p.mu.Lock()
		a := p.arrivals
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(a)
		return
	case r.Method == http.MethodPost && r.URL.Path == "/reset":
		p.mu.Lock()
		p.stats, p.arrivals = partnerStats{}, nil
		p.mu.Unlock()
		return
	case r.Method != http.MethodPost:
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	now := time.Now()
	_, _ = io.Copy(io.Discard, r.Body)
	id := r.Header.Get("Webhook-Id")
	n, _ := strconv.Atoi(r.Header.Get("Notice-Attempt"))
	p.mu.Lock()
	if p.stats.Arrived == 0 {
		p.stats.FirstNS = now.UnixNano()
	}
	p.stats.Arrived++
	p.stats.LastNS = now.UnixNano()
	if n > 1 && strings.HasPrefix(id, retryPrefix) {
		p.arrivals = append(p.arrivals, arrival{ID: id, N: n, RecvUS: now.UnixMicro()})
	}
	p.mu.Unlock()
	if n == 1 && strings.HasPrefix(id, retryPrefix) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

func (p *partnerServer) connState(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		p.mu.Lock()
		p.stats.Conns++
		p.mu.Unlock()
	}
}

// runPartner is the partner process: it listens on a loopback port, prints
// its address on stdout, and serves until stdin closes (its parent went
// away) or it is signalled.
func runPartner() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("partner listen: %w", err)
	}
	p := &partnerServer{}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second, ConnState: p.connState}
	fmt.Println(ln.Addr().String())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// isPartner says whether this process was started as the partner
// (startPartner runs its own executable with the argument "partner").
func isPartner() bool { return len(os.Args) > 1 && os.Args[1] == "partner" }

// partnerMain runs the partner process and gives its exit code.
func partnerMain() int {
	if err := runPartner(); err != nil {
		fmt.Fprintln(os.Stderr, "partner:", err)
		return 1
	}
	return 0
}

// partnerProc is the partner process as the driver sees it.
type partnerProc struct {
	cmd   *exec.Cmd
	stdin io.Closer
	base  string // http://127.0.0.1:port
	http  *http.Client
}

// startPartner starts this program again as the partner process.
func startPartner() (*partnerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "partner")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start partner: %w", err)
	}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("partner address: %w", err)
	}
	return &partnerProc{cmd: cmd, stdin: in, base: "http://" + strings.TrimSpace(addr),
		http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// URL is where notices are sent.
func (p *partnerProc) URL() string { return p.base + "/notify" }

// Pid is the partner's process id, for its CPU time.
func (p *partnerProc) Pid() int { return p.cmd.Process.Pid }

func (p *partnerProc) reset(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/reset", nil)
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("partner reset: %w", err)
	}
	return resp.Body.Close()
}

func (p *partnerProc) get(ctx context.Context, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("partner %s: %w", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("partner %s: %w", path, err)
	}
	return nil
}

func (p *partnerProc) stats(ctx context.Context) (partnerStats, error) {
	var s partnerStats
	return s, p.get(ctx, "/stats", &s)
}

func (p *partnerProc) arrivals(ctx context.Context) ([]arrival, error) {
	var a []arrival
	return a, p.get(ctx, "/arrivals", &a)
}

// waitArrived polls the partner until n attempts arrived or limit passes.
func (p *partnerProc) waitArrived(ctx context.Context, n int64, limit time.Duration) (partnerStats, error) {
	deadline := time.Now().Add(limit)
	for {
		s, err := p.stats(ctx)
		if err != nil || s.Arrived >= n {
			return s, err
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("partner: %d of %d attempts arrived within %s", s.Arrived, n, limit)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(100 * time.Millisecond): // another process: polled
		}
	}
}

// stop closes the partner's stdin, which ends it.
func (p *partnerProc) stop() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
