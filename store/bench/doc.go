// Package bench measures notifier end to end on a real Redis: how late
// attempts arrive at a partner (with and without the waker, with a backlog
// of pending notices), how many notices per second it delivers, how fast
// it enqueues, and how much Redis memory a pending notice costs. It backs
// `notifier bench` and `make bench-inprocess`; it asserts nothing. Its
// dispatcher runs inside the benchmark: `make bench` measures the real
// path instead, serve and the partner as processes of their own
// (store/bench/real), and `make bench-peer` compares it with asynq
// (store/bench/peer, a module of its own).
//
// It sits under store because it runs the real adapters: store.Redis as
// the queue and the expiry events, and a store.SQLite attempt log per
// dispatcher, wired to notifier.Dispatcher much as serve wires them;
// packages under notifier/ must not import store.
//
// Run (bench.go) runs the scenarios a Config asks for and writes one JSON
// line, a Result, per scenario. The delivery scenarios, throughput and
// lateness, each start their own dispatchers (delivery.go); the enqueue
// scenarios also price a pending notice and a bare trigger key in bytes
// (enqueue.go); a local partner times each arrival against its due time
// (partner.go); redis.go reads INFO and deletes the run's keys.
//
// It names no Redis key itself: a run's keys are those of a store.Keys
// with a prefix of its own, deleted at the end by SCANning for
// Keys.Pattern. It never flushes a database; the bare trigger keys are
// written to database 15 and deleted the same way.
package bench
