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
	// Three workers now wait for work: the next jobs go to them.
	for range 30 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			select {
			case p.work <- Job{N: 2}:
			case <-time.After(time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatal("no idle worker took a job")
				}
				continue
			}
			break
		}
	}
	waitUntil(t, "the next thirty jobs", func() bool { return ran.Load() == 33 })
	p.close()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("workers still running 10 s after the pool closed")
	}

	// An idle worker exits after p.idle without a close.
	var idleWorkers sync.WaitGroup
	q := &workerPool{work: make(chan Job), workers: &idleWorkers, idle: 20 * time.Millisecond, run: func(Job) {}}
	q.do(Job{N: 1})
	exited := make(chan struct{})
	go func() { idleWorkers.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("an idle worker did not exit")
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
