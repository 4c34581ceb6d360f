// Package notifier owns the domain of webhook delivery: notices, attempts and
// their outcomes, the rule that says whether an attempt succeeded, the HTTP
// delivery of one attempt, Decide (the pure decision of what follows an
// attempt), and the Dispatcher that turns due triggers into attempts with a
// bounded worker pool and applies those decisions. RunInOrder runs a
// process's long-running parts and stops them in reverse order.
//
// It also owns what the operators' tools share, so that the CLI, the API,
// the console and package client agree on every rule: the states of a
// notice (State, in one vocabulary), how a notice's status is assembled
// (NoticeStatus), and Intake, the one way new notices are resolved (partner,
// schedule, stamp) and stored, and ended ones sent again.
//
// Egress (egress.go, egresshttp.go) is how attempts leave: per-partner TLS
// (client certificates re-read when their files change, private CAs,
// server_name, min_tls), the egress proxy, and the SSRF guard in front of
// both. Tracing (trace.go) uses only the OpenTelemetry API: a span per
// notice enqueued, whose context the notice stores, and a span per attempt
// in that trace; package notifier/tracing decides whether and where they
// are exported.
//
// It declares the small interfaces it consumes and knows nothing of Redis
// or SQLite; package store implements them all, and main wires them in.
// The Dispatcher consumes Queue, Events, AttemptLog and Pauser; Intake
// consumes Submitter and Published; status, the API and the console read
// through Notices, History and PartnerAdmin. Times come from an injected
// clock so tests never sleep through a schedule.
package notifier
