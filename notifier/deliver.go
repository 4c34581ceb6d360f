package notifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// MaxSnippet is how much of a partner's reply is kept in the attempt log.
const MaxSnippet = 4 << 10

// maxDrain is how much more of a reply is read (and discarded) so the
// connection can be reused; a larger reply costs a new connection instead.
const maxDrain = 64 << 10

// DefaultTimeout bounds one attempt: connect, send, and read the reply.
const DefaultTimeout = 15 * time.Second

// Succeeded is the success rule: the partner answered 2xx. Anything else,
// including 3xx (redirects are not followed), is a failed attempt.
func Succeeded(status int) bool { return status >= 200 && status <= 299 }

// Permanent reports whether a failed attempt's status means the partner will
// never take this notice: 410 Gone, as in Standard Webhooks. The notice is
// given up at once instead of retried.
func Permanent(status int) bool { return status == http.StatusGone }

// Result is what one POST came to.
type Result struct {
	Start    time.Time
	Duration time.Duration
	// Status is 0 when no response came.
	Status int
	// Snippet is the start of the reply body, at most MaxSnippet bytes.
	Snippet []byte
	// Err is why no response came, or why the reply could not be read; it
	// never contains the URL.
	Err error
	// RetryAfter is the pause a 429 or 503 reply asked for with
	// Retry-After, capped at Deliverer.MaxRetryAfter; 0 if none.
	RetryAfter time.Duration
}

// Deliverer POSTs notices. It is safe for concurrent use and keeps
// connections to partners alive between attempts.
type Deliverer struct {
	client *retryablehttp.Client
	// routes are the clients of partners with egress settings, by name.
	routes map[string]*retryablehttp.Client
	// Timeout bounds each attempt.
	Timeout time.Duration
	// Now is the clock; Webhook-Timestamp is read from it.
	Now func() time.Time
	// UserAgent is sent on every request.
	UserAgent string
	// MaxRetryAfter caps the pause a partner may ask for with Retry-After
	// (default 1 h), so one header cannot park a notice for days.
	MaxRetryAfter time.Duration
}

// NewDeliverer returns a Deliverer with the given per-attempt timeout
// (DefaultTimeout if zero) that keeps up to maxIdlePerHost idle connections
// per partner. It never follows redirects, ignores proxy environment
// variables, and makes no in-call retries: the schedule is the retry layer.
func NewDeliverer(timeout time.Duration, maxIdlePerHost int) *Deliverer {
	return NewGuardedDeliverer(timeout, maxIdlePerHost, nil)
}

// NewGuardedDeliverer is NewDeliverer whose every connection is checked by
// guard on the resolved address at dial time (nil: no check), so neither a
// URL nor DNS can point an attempt at an internal address. A refused
// attempt's error wraps ErrBlocked.
func NewGuardedDeliverer(timeout time.Duration, maxIdlePerHost int, guard *Guard) *Deliverer {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Deliverer{client: newRetryable(NewOutboundClient(timeout, maxIdlePerHost, guard)), Timeout: timeout,
		Now: time.Now, UserAgent: "notifier/1", MaxRetryAfter: time.Hour}
}

// NewEgressDeliverer is NewGuardedDeliverer sending through e's clients:
// the attempts of a partner with egress settings (TLS, proxy) through its
// own, every other attempt through e's default.
func NewEgressDeliverer(timeout time.Duration, e *Egress) *Deliverer {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	d := &Deliverer{client: newRetryable(e.Client("")), Timeout: timeout, Now: time.Now, UserAgent: "notifier/1",
		MaxRetryAfter: time.Hour, routes: map[string]*retryablehttp.Client{}}
	for _, name := range e.routed() {
		d.routes[name] = newRetryable(e.Client(name))
	}
	return d
}

// newRetryable wraps hc for single tries: the schedule is the retry layer.
func newRetryable(hc *http.Client) *retryablehttp.Client {
	return &retryablehttp.Client{
		HTTPClient:   hc,
		Logger:       nil, // it would print full URLs, tokens in query strings included
		RetryMax:     0,
		RetryWaitMin: 100 * time.Millisecond,
		RetryWaitMax: time.Second,
		CheckRetry: func(context.Context, *http.Response, error) (bool, error) {
			return false, nil // success is decided by Succeeded, retries by the schedule
		},
		Backoff:      retryablehttp.DefaultBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
}

// NewOutboundClient returns the HTTP client for every request serve sends
// out (partner attempts, give-up alerts), so all of them get the same
// protections: every connection is checked by guard on the resolved address
// at dial time (nil: no check), proxy environment variables are ignored (a
// proxy would connect on our behalf, past the guard), and redirects are not
// followed (the 3xx is the response). timeout (DefaultTimeout if zero)
// bounds connecting and the TLS handshake, at most 10 s each; bound each
// request with its context. Up to maxIdlePerHost (at least 2) idle
// connections per host are kept.
func NewOutboundClient(timeout time.Duration, maxIdlePerHost int, guard *Guard) *http.Client {
	// retryablehttp calls CloseIdleConnections after every failed
	// request, which would drop the warm connections to every other
	// partner; hiding the method behind a bare RoundTripper keeps them.
	return outboundClient(roundTripper{newOutboundTransport(OutboundOptions{Timeout: timeout, MaxIdlePerHost: maxIdlePerHost, Guard: guard})})
}

type roundTripper struct{ http.RoundTripper }

// PostOptions are the per-partner settings of one attempt.
type PostOptions struct {
	// Secrets sign the attempt (Webhook-Signature); none: unsigned.
	Secrets []Secret
	// Timeout replaces the Deliverer's when positive.
	Timeout time.Duration
	// Partner names the partner whose egress settings (TLS, proxy) the
	// attempt is sent with; "": the default client.
	Partner string
}

// Post makes attempt n of notice with the Deliverer's settings, signed
// with the notice's own secrets.
func (d *Deliverer) Post(ctx context.Context, notice *Notice, n int) Result {
	return d.PostWith(ctx, notice, n, PostOptions{Secrets: notice.Secrets})
}

// PostWith makes attempt n of notice. A notice with a body and no
// Content-Type of its own is sent as application/json; one without a body
// is sent with "Content-Length: 0" and no Content-Type of notifier's.
// Extra headers on every attempt:
// Webhook-Id (the notice id, stable), Webhook-Timestamp (Unix seconds of
// this attempt), Notice-Attempt (n), Notice-Stamp (the stamp, Unix ms) and,
// with secrets, Webhook-Signature (Standard Webhooks, one v1 signature per
// secret, over this attempt's timestamp).
func (d *Deliverer) PostWith(ctx context.Context, notice *Notice, n int, o PostOptions) Result {
	timeout := d.Timeout
	if o.Timeout > 0 {
		timeout = o.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := d.Now()
	res := Result{Start: start}

	// An empty []byte would become a non-nil body of unknown length, sent
	// chunked; no body at all is sent as "Content-Length: 0".
	var body any
	if len(notice.Body) > 0 {
		body = notice.Body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, notice.URL, body)
	if err != nil {
		res.Err = redactErr(err, timeout)
		res.Duration = d.Now().Sub(start)
		return res
	}
	for k, vs := range notice.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if len(notice.Body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", d.UserAgent)
	req.Header.Set("Webhook-Id", notice.ID)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(start.Unix(), 10))
	req.Header.Set("Notice-Attempt", strconv.Itoa(n))
	req.Header.Set("Notice-Stamp", strconv.FormatInt(notice.Stamp.UnixMilli(), 10))
	if len(o.Secrets) > 0 {
		req.Header.Set("Webhook-Signature", Sign(o.Secrets, notice.ID, start, notice.Body))
	}
	if _, ok := req.Header["Idempotency-Key"]; !ok {
		// A delivery may arrive twice (partners drop duplicates by
		// Webhook-Id), so net/http may send it again, once, on a new
		// connection when a kept-alive one turns out closed before any
		// reply; otherwise such a race costs the notice an attempt of its
		// schedule, or its last. An empty value marks the request so
		// without sending the header (see http.Transport).
		req.Header["Idempotency-Key"] = nil
	}

	client := d.client
	if rc, ok := d.routes[o.Partner]; ok {
		client = rc
	}
	resp, err := client.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		res.Err = redactErr(err, timeout)
		res.Duration = d.Now().Sub(start)
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if res.Status == http.StatusTooManyRequests || res.Status == http.StatusServiceUnavailable {
		res.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), start, d.MaxRetryAfter)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(resp.Body, MaxSnippet)); err != nil {
		res.Err = fmt.Errorf("read reply: %w", redactErr(err, timeout))
	}
	res.Snippet = buf.Bytes()
	if res.Err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	}
	res.Duration = d.Now().Sub(start)
	return res
}

// redactErr strips the URL that net/http puts in its errors (it may carry
// tokens in its query string) and names timeouts plainly.
func redactErr(err error, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w after %s", ErrTimeout, timeout)
	}
	return err
}

// ErrTimeout is wrapped by Result.Err when an attempt ran out of time.
var ErrTimeout = errors.New("timed out")

// retryAfter reads a Retry-After value, in seconds or as an HTTP date, and
// caps it; anything unreadable or in the past is 0.
func retryAfter(v string, now time.Time, cap time.Duration) time.Duration {
	if v == "" {
		return 0
	}
	if cap <= 0 {
		cap = time.Hour
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		d = time.Duration(min(secs, int64(cap/time.Second)+1)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(min(d, cap), 0)
}
