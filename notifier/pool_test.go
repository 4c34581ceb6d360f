package notifier

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkerPool: every job handed over runs once; a worker that finished
// takes the next job instead of a new goroutine starting; closing the pool
// lets every worker exit, and an idle worker exits on its own.
func TestWorkerPool(t *testing.T) {
	var workers sync.WaitGroup
	var ran atomic.Int64
	release := make(chan struct{})
	p := &workerPool{work: make(chan Job), workers: &workers, idle: time.Hour, run: func(j Job) {
		ran.Add(1)
		if j.N == 1 {
			<-release // the first jobs hold their workers
		}
	}}
	for range 3 {
		p.do(Job{N: 1})
	}
	close(release)
	waitUntil(t, "the first three jobs", func() bool { return ran.Load() == 3 })
	// Three workers now wait for work: a bare send reaches one only if
	// it waits.
	for range 30 {
		select {
		case p.work <- Job{N: 2}:
		case <-time.After(10 * time.Second):
			t.Fatal("no idle worker took a job")
		}
	}
	waitUntil(t, "the next thirty jobs", func() bool { return ran.Load() == 33 })
	p.close()
	waitGroup(t, "workers to exit after the pool closed", &workers)

	// An idle worker exits after p.idle without a close.
	var idleWorkers sync.WaitGroup
	q := &workerPool{work: make(chan Job), workers: &idleWorkers, idle: 20 * time.Millisecond, run: func(Job) {}}
	q.do(Job{N: 1})
	waitGroup(t, "an idle worker to exit", &idleWorkers)
}

// waitGroup waits up to 10 s for wg.
func waitGroup(t *testing.T, what string, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
