// Package notifier owns the domain of webhook delivery: notices, attempts and
// their outcomes, the rule that says whether an attempt succeeded, the HTTP
// delivery of one attempt, and the Dispatcher that turns due triggers into
// attempts with a bounded worker pool.
//
// It declares the small interfaces it consumes (Queue, Events, AttemptLog) and
// knows nothing of Redis or SQLite; package store implements them. Times come
// from an injected clock so tests never sleep through a schedule.
package notifier
