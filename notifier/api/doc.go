// Package api is the HTTP surface of `notifier serve --listen ADDR`: a small
// JSON API to enqueue, inspect, cancel and retry notices, the health and
// readiness probes, and the Prometheus metrics of the dispatcher.
//
// It owns the routes, their authentication (one bearer token), the mapping
// of domain errors to HTTP statuses and the metric names. It does not own
// what a notice is or how it is stored: it depends only on package notifier,
// whose interfaces (Notices, Submitter, Published, History) the store
// implements and main wires in, and it never imports package store.
// Requests become the same notifier calls the CLI makes (Intake to enqueue
// and retry, NoticeStatus, Notices.Cancel), so the API and the CLI agree on
// every rule. It starts no goroutines of its own; Serve runs an http.Server
// until its context ends.
//
// Routes (all errors are {"error":"one line"}):
//
//	POST   /v1/notices            201 {"id"} + Location; 400, 409 duplicate, 413, 503
//	GET    /v1/notices/{id}       200 {"status", "attempts"}; 404
//	POST   /v1/notices/{id}/retry 200 {"id","stamp"}; 404, 409 pending
//	DELETE /v1/notices/{id}       204; 404, 409 already ended
//	GET    /healthz               200 "ok" (no token)
//	GET    /readyz                200, or 503 {"error"} (no token)
//	GET    /metrics               Prometheus text (token unless Server.PublicMetrics)
//
// Every /v1 route requires "Authorization: Bearer <token>".
//
// NewPartner serves the partner API under /v1/partner/ (partner.go): the
// routes a partner's portal token reaches, each answered by a
// notifier.Portal for that partner only. The two handlers share no token:
// the operator's token is not a partner's, and a partner's token opens no
// operator route.
package api
