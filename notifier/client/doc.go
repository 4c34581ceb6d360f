// Package client enqueues notices straight into the Redis that a
// `notifier serve` uses, for Go programs that would otherwise shell out to
// `notifier enqueue` or need an HTTP front end.
//
// A Client does what `notifier enqueue` does, through the same
// notifier.Intake: it fills the id and the stamp, resolves the notice's
// partner from the partners the running serve published (by name, else by
// the longest URL prefix), gives a notice that names no schedule its
// partner's schedule or else the serve's default, and stores the notice
// with its first attempt armed. Delivery is the serve's job: a Client never
// sends a request to a partner, and notices enqueued while no serve runs
// wait in Redis until one starts.
//
// It is the one package under notifier/ that imports package store, and
// on purpose: it is the Go API for programs that enqueue directly into
// Redis, so it must dial Redis as the CLI does (store.Connect: one server,
// Sentinel or Cluster, passwords kept out of errors) and write the keys the
// serve reads (store.Redis, which names them all). Package notifier, the
// API and the console depend on notifier's interfaces only. The package
// owns no Redis keys of its own.
package client
