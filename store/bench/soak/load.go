package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// failMark ends the ids of notices whose first attempt the partner fails.
const failMark = "-f"

// runPartner is the partner process: 200 at once, except 503 to the first
// attempt of a notice whose id ends in failMark. It keeps no state, so its
// own memory stays flat whatever the run's length. It prints its address
// and serves until killed.
func runPartner(out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "listening %s\n", ln.Addr())
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.Header.Get("Webhook-Id"), failMark) && r.Header.Get("Notice-Attempt") == "1" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})}
	return srv.Serve(ln)
}

// load enqueues notices through serve's POST /v1/notices at a steady rate,
// from a pool of senders on kept-alive connections.
type load struct {
	url, token, partner string
	c                   config
	client              *http.Client
	body                string

	sent, failed, behind atomic.Int64
	firstErr             atomic.Pointer[string]
}

func newLoad(base, token, partner string, c config) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: c.senders, MaxConnsPerHost: c.senders, Proxy: nil}
	return &load{url: base + "/v1/notices", token: token, partner: partner, c: c,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		body:   strings.Repeat("x", c.body)}
}

// run enqueues until ctx ends. The pace is kept by a 10 ms ticker handing
// out the notices due so far; notices the senders cannot take at once are
// counted as behind (the machine could not keep the rate) and skipped, so
// the rate never bunches up.
func (l *load) run(ctx context.Context) error {
	jobs := make(chan int64, l.c.senders*4)
	var wg sync.WaitGroup
	for range l.c.senders {
		wg.Go(func() {
			for n := range jobs {
				l.send(n)
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var next int64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		due := int64(time.Since(start).Seconds() * l.c.rate)
		for ; next < due; next++ {
			select {
			case jobs <- next:
			default:
				l.behind.Add(1)
			}
		}
	}
	close(jobs)
	wg.Wait()
	if p := l.firstErr.Load(); p != nil && l.sent.Load() == 0 {
		return fmt.Errorf("no notice was enqueued: %s", *p)
	}
	return nil
}

// send enqueues notice n.
func (l *load) send(n int64) {
	id := fmt.Sprintf("soak-%d", n)
	if n%int64(l.c.failEvery) == 0 {
		id += failMark
	}
	line := fmt.Sprintf(`{"id":%q,"url":%q,"body":%q}`, id, l.partner, l.body)
	req, err := http.NewRequest(http.MethodPost, l.url, bytes.NewReader([]byte(line)))
	if err != nil {
		l.fail(err.Error())
		return
	}
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := l.client.Do(req)
	if err != nil {
		l.fail(err.Error())
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		l.fail(fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b)))
		return
	}
	l.sent.Add(1)
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.firstErr.CompareAndSwap(nil, &msg)
}
