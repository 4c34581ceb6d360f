// Package store implements the interfaces package notifier consumes: Redis
// holds what is pending (trigger keys, payloads, the due index, claims and the
// expiry-event subscription) and SQLite holds the attempt log. It also starts
// the embedded redis-server that `notifier serve` uses by default.
//
// Every Redis key is named in keys.go, and every change that touches more than
// one key is a Lua script in scripts.go, so a reader can check the data model
// in two files.
package store
