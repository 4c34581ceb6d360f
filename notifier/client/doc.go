// Package client enqueues notices straight into the Redis that a
// `notifier serve` uses, for Go programs that would otherwise shell out to
// `notifier enqueue` or need an HTTP front end.
//
// A Client does what `notifier enqueue` does: it fills the id and the stamp,
// resolves the notice's partner from the partners the running serve
// published (by name, else by the longest URL prefix), gives a notice that
// names no schedule its partner's schedule or else the serve's default, and
// stores the notice with its first attempt armed. Delivery is the serve's
// job: a Client never sends a request to a partner, and notices enqueued
// while no serve runs wait in Redis until one starts.
//
// The package owns no Redis keys of its own; it goes through store.Redis,
// which names them all.
package client
