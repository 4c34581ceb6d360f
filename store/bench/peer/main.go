// Command peer is the asynq side of `make bench-peer`: asynq doing the job
// notifier's throughput scenario does. It enqueues -n tasks into the Redis
// at -redis, each a notice for the partner at -url, prints "enqueued", and
// waits for a line on standard input (so that the driver can read its CPU
// time there); then it runs an asynq server whose handler POSTs each task
// to the partner, as notifier does, and logs every attempt to an SQLite
// table shaped like notifier's attempt log, through one batching writer.
// Once -n attempts have succeeded and are logged it prints one JSON line
// and exits.
//
// It is a module of its own so that asynq is not a dependency of notifier.
// Every address it is given must be loopback or a unix socket; it refuses
// any other partner URL.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	_ "github.com/mattn/go-sqlite3"
)

const taskType = "notice"

// notice is a task's payload: what notifier stores for a notice.
type notice struct {
	ID    string          `json:"id"`
	URL   string          `json:"url"`
	Stamp int64           `json:"stamp"`
	Body  json.RawMessage `json:"body"`
}

// row is one attempt, as notifier's attempt log holds it.
type row struct {
	id                  string
	stamp, startUS, dur int64
	n, status           int
	url, outcome, err   string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
}

func run() error {
	redisAddr := flag.String("redis", "", "unix socket path of the Redis to use")
	partner := flag.String("url", "", "partner URL (loopback only)")
	n := flag.Int("n", 20000, "tasks to enqueue and deliver")
	dbPath := flag.String("db", "", "SQLite attempt log to create")
	conc := flag.Int("concurrency", 512, "asynq worker count")
	size := flag.Int("body", 200, "body size in bytes")
	prefix := flag.String("prefix", "asynq", "task id prefix")
	flag.Parse()
	u, err := url.Parse(*partner)
	if err != nil || u.Scheme != "http" {
		return fmt.Errorf("-url %q: want an http URL", *partner)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %q: the partner must be on loopback", *partner)
	}
	if *redisAddr == "" || *dbPath == "" || *n < 1 || *conc < 1 {
		return errors.New("-redis, -db, -n and -concurrency are required")
	}
	redisOpt := asynq.RedisClientOpt{Network: "unix", Addr: *redisAddr, PoolSize: 64}

	// Enqueue, with a few connections at once, as a producer would.
	client := asynq.NewClient(redisOpt)
	defer client.Close()
	start := time.Now()
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					errs <- nil
					return
				}
				b, _ := json.Marshal(notice{ID: fmt.Sprintf("%s-%08d", *prefix, i), URL: *partner,
					Stamp: time.Now().UnixMilli(), Body: json.RawMessage(body(i, *size))})
				if _, err := client.Enqueue(asynq.NewTask(taskType, b), asynq.MaxRetry(5)); err != nil {
					errs <- fmt.Errorf("enqueue: %w", err)
					return
				}
			}
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			return err
		}
	}
	enqueueRate := float64(*n) / time.Since(start).Seconds()
	fmt.Println("enqueued")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for the go-ahead: %w", err)
	}

	log, err := openLog(*dbPath)
	if err != nil {
		return err
	}
	defer log.db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writerDone := make(chan error, 1)
	go func() { writerDone <- log.run(ctx) }()

	h := &handler{http: &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{Proxy: nil, MaxIdleConns: *conc, MaxIdleConnsPerHost: *conc,
			IdleConnTimeout: 90 * time.Second, DisableCompression: true},
	}, log: log, want: int64(*n), done: make(chan struct{})}
	srv := asynq.NewServer(redisOpt, asynq.Config{Concurrency: *conc, LogLevel: asynq.WarnLevel,
		ShutdownTimeout: 10 * time.Second})
	if err := srv.Start(asynq.HandlerFunc(h.handle)); err != nil {
		return fmt.Errorf("asynq server: %w", err)
	}
	select {
	case <-h.done:
	case <-time.After(10 * time.Minute):
		srv.Shutdown()
		return fmt.Errorf("%d of %d delivered within 10 minutes", h.delivered.Load(), *n)
	}
	srv.Shutdown()
	if err := log.waitLogged(h.attempts.Load(), time.Minute); err != nil {
		return err
	}
	cancel()
	if err := <-writerDone; err != nil {
		return err
	}
	out, _ := json.Marshal(map[string]any{"delivered": h.delivered.Load(), "attempts": h.attempts.Load(),
		"logged": log.logged.Load(), "enqueue_per_sec": int(enqueueRate)})
	fmt.Println(string(out))
	return nil
}

// body is a JSON object of exactly size bytes, as the driver's bodies are.
func body(i, size int) string {
	b := fmt.Sprintf(`{"order":%d,"pad":""}`, i)
	return b[:len(b)-2] + strings.Repeat("x", max(size-len(b), 0)) + `"}`
}

type handler struct {
	http      *http.Client
	log       *attemptLog
	want      int64
	delivered atomic.Int64
	attempts  atomic.Int64
	once      sync.Once
	done      chan struct{}
}

// handle makes one attempt: POST the body with notifier's headers, log the
// attempt, and fail the task (so asynq retries it) unless the partner
// answered 2xx.
func (h *handler) handle(ctx context.Context, t *asynq.Task) error {
	var nt notice
	if err := json.Unmarshal(t.Payload(), &nt); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	n, _ := asynq.GetRetryCount(ctx)
	n++
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nt.URL, bytes.NewReader(nt.Body))
	if err != nil {
		return fmt.Errorf("request: %v: %w", err, asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", nt.ID)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(start.Unix(), 10))
	req.Header.Set("Notice-Attempt", strconv.Itoa(n))
	req.Header.Set("Notice-Stamp", strconv.FormatInt(nt.Stamp, 10))
	r := row{id: nt.ID, stamp: nt.Stamp, startUS: start.UnixMicro(), n: n, url: nt.URL}
	resp, err := h.http.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		r.status = resp.StatusCode
	}
	r.dur = time.Since(start).Microseconds()
	ok := err == nil && resp.StatusCode/100 == 2
	switch {
	case ok:
		r.outcome = "delivered"
	case err != nil:
		r.outcome, r.err = "retry", err.Error()
	default:
		r.outcome, r.err = "retry", "status "+strconv.Itoa(resp.StatusCode)
	}
	h.log.rows <- r
	h.attempts.Add(1)
	if !ok {
		return errors.New(r.err)
	}
	if h.delivered.Add(1) == h.want {
		h.once.Do(func() { close(h.done) })
	}
	return nil
}
