// Package console is the web console of `notifier serve --listen`: HTML
// pages under /ui/ for people, next to the JSON API for programs.
//
// It owns the pages (the notices list with counts per state, a notice's
// schedule drawn as a timeline, a live attempt feed, the partners), their
// browser authentication and their buttons (retry, cancel, pause, resume).
// It does not own how notices are stored or sent: it depends only on
// package notifier, never on package store. Every page is a read through
// notifier's interfaces (Notices, PartnerAdmin and Published for what
// waits, History for attempts and ended notices), which the store
// implements and main wires in, and every button is the call the CLI makes
// (Intake.Resend, Notices.Cancel, PartnerAdmin.Pause and Resume), so the
// console and `notifier` agree on every rule.
//
// Authentication: a login form takes the API token (full access) or the
// read-only token. A good token sets an HttpOnly, SameSite=Strict cookie
// holding an expiry and an HMAC keyed by a key derived from that token, so
// the cookie never holds the token and rotating the token ends every
// session. Every state-changing request is a POST form carrying a CSRF token
// derived from the session; read-only sessions see no buttons and their
// POSTs are refused with 403.
//
// NewPortal serves the partner portal under /portal/ (portal.go,
// portal_pages.go, templates/portal_*.html): the same list, timeline and
// feed, scoped by notifier.Portal to the partner whose portal token opened
// the session, with its own cookie, CSRF tokens and login; see portal.go.
//
// What is never shown: notice bodies, headers and secrets (they stay in
// Redis and the archive), and URLs' query strings (notifier.RedactURL).
// Partners' replies are shown as escaped text. Templates, CSS and the one
// small script are embedded: the console works offline and needs no build
// step.
package console
