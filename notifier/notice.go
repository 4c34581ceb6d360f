package notifier

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/notifier/notifier/backoff"
)

// Limits on what a notice may hold. They keep one bad notice from costing
// Redis memory or a partner's patience.
const (
	MaxIDLen     = 200
	MaxURLLen    = 2048
	MaxBodyBytes = 1 << 20
	// MaxHeaders bounds the notice's header lines: each value of a
	// header counts as one.
	MaxHeaders = 50
	// MaxHeaderBytes bounds the notice's headers, the name and value of
	// each line together: partners' servers refuse requests with larger
	// ones.
	MaxHeaderBytes = 16 << 10
	MaxSecrets     = 10
)

// ErrInvalidNotice is wrapped by every error Validate returns.
var ErrInvalidNotice = errors.New("invalid notice")

// ErrDuplicate is returned when a notice with the same id is already pending.
var ErrDuplicate = errors.New("duplicate notice id")

// ErrNotStored is wrapped by the per-notice error of an enqueue that the
// store failed before sending it: the notice was not stored.
var ErrNotStored = errors.New("not stored")

// ErrUnconfirmed is wrapped by the per-notice error of an enqueue that the
// store sent but could not confirm (the connection failed meanwhile, and
// kept failing): the notice may or may not be stored.
var ErrUnconfirmed = errors.New("not confirmed")

// ErrNotFound is returned when no notice or attempt has the given id.
var ErrNotFound = errors.New("notice not found")

// Notice is one message to deliver to one partner URL, retried on Schedule
// until the partner accepts it or the schedule runs out.
type Notice struct {
	// ID is stable across attempts and sent as Webhook-Id, so partners can
	// drop duplicates.
	ID string
	// URL is where the notice is POSTed.
	URL string
	// Body is sent as-is.
	Body []byte
	// Header holds extra request headers; Content-Type defaults to
	// application/json when there is a body.
	Header http.Header
	// Schedule lists the attempt offsets from Stamp.
	Schedule backoff.Schedule
	// Stamp is when the notice was first enqueued, with millisecond precision.
	Stamp time.Time
	// Partner names the partner it is sent under (see Partner); empty: the
	// partner whose URL prefix matches, if any.
	Partner string
	// Success judges the partner's replies; zero: the partner's rule, else
	// any 2xx.
	Success SuccessRule
	// Secrets sign every attempt (Standard Webhooks), with the partner's.
	Secrets []Secret
	// Trace is the W3C traceparent of the span that enqueued it, when
	// tracing is on ("" otherwise): its attempts' spans join that trace.
	Trace string

	// scheduleDefaulted is set by Line.Notice when the line named no
	// schedule, so a partner's schedule may replace the default.
	scheduleDefaulted bool
}

// reserved headers are set by the deliverer on every attempt; a notice may not
// override them, or Webhook-Id would stop being stable. Upgrade is refused
// too: HTTP/2 fails every request that carries it.
var reserved = map[string]bool{
	"Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
	"Notice-Attempt": true, "Notice-Stamp": true, "Content-Length": true, "Host": true,
	"Transfer-Encoding": true, "Connection": true, "Upgrade": true,
}

// Validate reports whether n can be stored and delivered.
func (n *Notice) Validate() error { return n.validate(ValidateURL) }

// ValidateMemo is Validate for one of many notices, most of which share a
// few URLs: m remembers ValidateURL's verdict (a function of the URL
// alone) per URL, so each is parsed once. Its result is Validate's.
func (n *Notice) ValidateMemo(m *URLMemo) error { return n.validate(m.Check) }

// URLMemo remembers the verdicts of a URL check by URL, for at most
// urlMemoSize URLs (later ones are checked every time). Its zero value
// memoises ValidateURL; it is not safe for concurrent use.
type URLMemo struct {
	// Func is the check; nil means ValidateURL. It must be a function of
	// the URL alone.
	Func    func(raw string) error
	last    string
	lastErr error
	seen    map[string]error
}

// urlMemoSize bounds a URLMemo, so a file of distinct URLs costs no more
// memory than a few batches of them.
const urlMemoSize = 1024

// Check returns the check's verdict on raw, from memory when it has one.
func (m *URLMemo) Check(raw string) error {
	if m.seen != nil && raw == m.last {
		return m.lastErr
	}
	err, ok := m.seen[raw]
	if !ok {
		if m.Func != nil {
			err = m.Func(raw)
		} else {
			err = ValidateURL(raw)
		}
		if m.seen == nil {
			m.seen = make(map[string]error)
		}
		if len(m.seen) < urlMemoSize {
			m.seen[raw] = err
		}
	}
	m.last, m.lastErr = raw, err
	return err
}

func (n *Notice) validate(checkURL func(string) error) error {
	if err := ValidateID(n.ID); err != nil {
		return err
	}
	if err := checkURL(n.URL); err != nil {
		return err
	}
	if len(n.Body) > MaxBodyBytes {
		return fmt.Errorf("%w: body is %d bytes, at most %d", ErrInvalidNotice, len(n.Body), MaxBodyBytes)
	}
	if err := validateHeader(n.Header); err != nil {
		return err
	}
	if n.Partner != "" {
		if err := ValidatePartnerName(n.Partner); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidNotice, err)
		}
	}
	if len(n.Secrets) > MaxSecrets {
		return fmt.Errorf("%w: %d secrets, at most %d", ErrInvalidNotice, len(n.Secrets), MaxSecrets)
	}
	if len(n.Schedule) == 0 || len(n.Schedule) > backoff.MaxAttempts {
		return fmt.Errorf("%w: schedule has %d attempts", ErrInvalidNotice, len(n.Schedule))
	}
	return nil
}

// ValidateStored is the check for a notice read back from the store: only
// what delivery needs (an id, an absolute http(s) URL, a schedule). Limits
// added since the notice was stored (header size, canonical IP hosts) are
// enqueue's business, so tightening them never drops notices already
// pending; the dial-time guard still applies to every attempt.
func (n *Notice) ValidateStored() error {
	if err := ValidateStoredID(n.ID); err != nil {
		return err
	}
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: stored url %q is not an absolute http(s) URL", ErrInvalidNotice, RedactURL(n.URL))
	}
	if len(n.Schedule) == 0 || len(n.Schedule) > backoff.MaxAttempts {
		return fmt.Errorf("%w: schedule has %d attempts", ErrInvalidNotice, len(n.Schedule))
	}
	return nil
}

// ValidateID reports whether id can name a new notice: 1 to MaxIDLen
// printable ASCII characters without spaces, and neither "." nor "..",
// which the API's and console's URL paths cannot name. Ids may contain '_':
// trigger keys are parsed from the right.
func ValidateID(id string) error {
	if id == "." || id == ".." {
		return fmt.Errorf("%w: id %q cannot be a URL path segment", ErrInvalidNotice, id)
	}
	return ValidateStoredID(id)
}

// ValidateStoredID is ValidateID without the rules added since notices were
// first stored (the ids "." and ".."), for reading keys and notices back:
// a notice enqueued before a rule was added is still delivered.
func ValidateStoredID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty id", ErrInvalidNotice)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: id is %d bytes, at most %d", ErrInvalidNotice, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: id %q has a space, control or non-ASCII character", ErrInvalidNotice, id)
		}
	}
	return nil
}

// ValidateURL reports whether raw is an absolute http or https URL without
// user info.
func ValidateURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w: empty url", ErrInvalidNotice)
	}
	if len(raw) > MaxURLLen {
		return fmt.Errorf("%w: url is %d bytes, at most %d", ErrInvalidNotice, len(raw), MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: url %q does not parse", ErrInvalidNotice, RedactURL(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: url %q: scheme must be http or https", ErrInvalidNotice, RedactURL(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("%w: url %q has no host", ErrInvalidNotice, RedactURL(raw))
	}
	if u.User != nil {
		return fmt.Errorf("%w: url must not carry user info", ErrInvalidNotice)
	}
	// Hosts such as 127.1 or 0x7f000001 read as other addresses to some
	// resolvers than to Go: refused whatever the address guard allows.
	if err := (URLPolicy{}).Check(raw); err != nil {
		return fmt.Errorf("%w: url %q: %v", ErrInvalidNotice, RedactURL(raw), err)
	}
	return nil
}

// validateHeader checks a notice's headers by the rules net/http applies
// when it sends them (httpguts), so none fails every attempt, and bounds
// them. Every value is a header line of its own: each counts toward
// MaxHeaders and its name and value toward MaxHeaderBytes.
func validateHeader(h http.Header) error {
	lines, size := 0, 0
	for k, vs := range h {
		lines += len(vs)
		if lines > MaxHeaders {
			return fmt.Errorf("%w: more than %d header lines (each value is one)", ErrInvalidNotice, MaxHeaders)
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("%w: header name %q", ErrInvalidNotice, k)
		}
		if reserved[http.CanonicalHeaderKey(k)] {
			return fmt.Errorf("%w: header %s is set by notifier", ErrInvalidNotice, http.CanonicalHeaderKey(k))
		}
		for _, v := range vs {
			if size += len(k) + len(v); size > MaxHeaderBytes {
				return fmt.Errorf("%w: headers exceed %d bytes", ErrInvalidNotice, MaxHeaderBytes)
			}
			if !httpguts.ValidHeaderFieldValue(v) {
				// The value is not shown: it may be a credential.
				return fmt.Errorf("%w: header %s has a control character", ErrInvalidNotice, k)
			}
		}
	}
	return nil
}

// RedactURL returns raw without user info, query string or fragment, which
// often carry tokens. It is what the attempt log and error messages show.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i]
		}
		if i := strings.Index(raw, "@"); i >= 0 {
			return "<unparsable url>"
		}
		return raw
	}
	u.User = nil
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery = "redacted"
		u.ForceQuery = false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// Outcome is the result of one attempt, as recorded in the attempt log.
type Outcome string

// The outcomes of an attempt.
const (
	// Delivered: the partner accepted the notice; nothing is left pending.
	Delivered Outcome = "delivered"
	// Retry: the attempt failed and a later attempt is scheduled.
	Retry Outcome = "retry"
	// GaveUp: the attempt failed and no attempt is left (or the partner
	// answered 410 Gone); the notice is dropped from Redis.
	GaveUp Outcome = "gave-up"
	// Error: no request could be made (for example the stored notice did
	// not decode); the notice is dropped.
	Error Outcome = "error"
	// Blocked: the SSRF guard refused the partner's address; the notice
	// is given up, not retried.
	Blocked Outcome = "blocked"
)

// ParseOutcome returns the Outcome named s.
func ParseOutcome(s string) (Outcome, error) {
	switch o := Outcome(s); o {
	case Delivered, Retry, GaveUp, Error, Blocked:
		return o, nil
	}
	return "", fmt.Errorf("unknown outcome %q (want delivered, retry, gave-up, blocked or error)", s)
}

// Attempt is one POST of a notice, or the record that none could be made.
type Attempt struct {
	// Seq orders attempts in the log; it is set by the log.
	Seq      int64
	NoticeID string
	Stamp    time.Time
	// N is the 1-based slot of the schedule this attempt filled.
	N        int
	Due      time.Time
	Start    time.Time
	Duration time.Duration
	// URL is redacted (see RedactURL).
	URL string
	// Status is the HTTP status code, 0 when no response came.
	Status  int
	Outcome Outcome
	// Error says why the attempt failed, without the URL.
	Error string
	// Response is the start of the partner's reply, at most MaxSnippet bytes.
	Response string
	// Next is when the next attempt is due; zero when none is scheduled.
	Next time.Time
	// Partner names the partner the notice was sent under; empty if none.
	Partner string
	// Ended is set on the attempt that ends its notice (delivered, given up
	// or dropped): the notice itself, which the log archives so that
	// `notifier retry` and `replay` can send it again after Redis forgot it.
	// It is not part of the attempt's row and never printed.
	Ended *Notice
	// Trace is the notice's stored trace context (Notice.Trace), for the
	// attempt's span; not part of the attempt's row.
	Trace string
}

// Lateness is how long after its due time the attempt started.
func (a *Attempt) Lateness() time.Duration { return a.Start.Sub(a.Due) }
