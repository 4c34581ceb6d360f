package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/notifier/notifier/backoff"
)

// The partner portal lets each partner see, verify and re-request its own
// notices: through the console's partner pages and the /v1/partner API,
// both of which ask a Portal. A Portal answers every question for one
// Caller, and a notice of another partner (or of none) is ErrNotFound, as
// if it did not exist, so a partner cannot tell other partners' ids from
// unknown ones.

// ErrRateLimited is wrapped by the error of a re-send or test notice asked
// for faster than the partner's rate allows; see RateLimitError.
var ErrRateLimited = errors.New("rate limited")

// RateLimitError says when the partner may ask again.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many re-sends and test notices: try again in %s", e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) hold.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// ErrNoPrefix is wrapped by SendTest for a partner without url_prefix: it
// has no URL of its own to send a test notice to.
var ErrNoPrefix = errors.New("partner has no url_prefix")

// Defaults of PortalConfig's ActionRate and ActionBurst: ten re-sends or
// test notices a minute per partner, ten at once.
const (
	DefaultPortalActionRate  = rate.Limit(1.0 / 6)
	DefaultPortalActionBurst = 10
)

// PortalLog is the attempt log as the portal reads it. store.SQLite
// implements it.
type PortalLog interface {
	History
	// Each calls fn for every attempt matching f, oldest first, and
	// returns at the end of the log, or with fn's first error.
	Each(ctx context.Context, f AttemptFilter, fn func(Attempt) error) error
}

// PortalQueue is what the portal needs of the store of pending notices.
// store.Redis implements it.
type PortalQueue interface {
	Notices
	Submitter
	Published
	// StoredNotice returns notice id, pending or parked, with its body. It
	// wraps ErrNotFound if the store holds no such notice.
	StoredNotice(ctx context.Context, id string) (Notice, error)
}

// PortalConfig configures NewPortal.
type PortalConfig struct {
	Queue PortalQueue
	Log   PortalLog
	// Partners are serve's partners: their prefixes (test notices), their
	// secrets (signatures of pulled bodies) and their portal tokens.
	Partners []*Partner
	// Reserved are tokens no partner may have (the operator's).
	Reserved []string
	// ActionRate and ActionBurst bound each partner's re-sends and test
	// notices together, per serve; 0: the defaults.
	ActionRate  rate.Limit
	ActionBurst int
	// Logger receives one line per re-send and test notice, naming the
	// partner and the fingerprint of the token that asked. Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Portal answers partners' questions about their own notices.
type Portal struct {
	c        PortalConfig
	tokens   *PortalTokens
	partners map[string]*Partner
	prefixes *prefixIndex
	intake   Intake

	mu     sync.Mutex
	limits map[string]*rate.Limiter
	// pendingSlot lets one pull of pending notices run at a time.
	pendingSlot chan struct{}
}

// NewPortal returns a portal over c's stores. It returns an error if a
// portal token is given twice or is also one of c.Reserved.
func NewPortal(c PortalConfig) (*Portal, error) {
	if c.Queue == nil || c.Log == nil {
		return nil, errors.New("portal: Queue and Log are required")
	}
	tokens, err := NewPortalTokens(c.Partners, c.Reserved...)
	if err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ActionRate <= 0 {
		c.ActionRate = DefaultPortalActionRate
	}
	if c.ActionBurst <= 0 {
		c.ActionBurst = DefaultPortalActionBurst
	}
	p := &Portal{c: c, tokens: tokens, partners: map[string]*Partner{}, limits: map[string]*rate.Limiter{},
		pendingSlot: make(chan struct{}, 1), intake: Intake{Queue: c.Queue, Published: c.Queue, Now: c.Now}}
	prefixes := map[string][]string{}
	for _, pa := range c.Partners {
		p.partners[pa.Name] = pa
		prefixes[pa.Name] = pa.Prefixes
	}
	p.prefixes = newPrefixIndex(prefixes)
	return p, nil
}

// Tokens checks presented portal tokens.
func (p *Portal) Tokens() *PortalTokens { return p.tokens }

// PortalNotice is what a partner may see of one of its notices: its
// current send, without body, headers or secrets.
type PortalNotice struct {
	ID    string
	State State
	Stamp time.Time
	// URL has no query string (RedactURL).
	URL      string
	Schedule backoff.Schedule
	// Pending is the waiting attempt (N = 0 if none).
	Pending Pending
	// Attempts are the logged attempts of this send, oldest first;
	// Earlier counts those of earlier sends.
	Attempts []Attempt
	Earlier  int
	// CanResend is set for an ended notice the archive holds.
	CanResend bool
}

// Notice returns notice id if it is c's, else an error wrapping
// ErrNotFound; any other error is a store failure.
func (p *Portal) Notice(ctx context.Context, c Caller, id string) (PortalNotice, error) {
	if err := ValidateID(id); err != nil {
		return PortalNotice{}, notFound(id)
	}
	var pending *Notice
	pa, err := p.c.Queue.PendingHeader(ctx, id)
	switch {
	case err == nil:
		pending = &pa.Notice
	case !errors.Is(err, ErrNotFound):
		return PortalNotice{}, err
	}
	storeState, err := p.c.Queue.State(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return PortalNotice{}, err
	}
	all, err := p.c.Log.NoticeAttempts(ctx, id)
	if err != nil {
		return PortalNotice{}, err
	}
	ended, err := p.c.Log.Ended(ctx, id)
	archived := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorruptArchive) {
		return PortalNotice{}, err
	}
	d := PortalNotice{ID: id}
	owner := ""
	switch {
	case pending != nil:
		d.Stamp, d.Schedule, d.URL, owner = pending.Stamp, pending.Schedule, pending.URL, pending.Partner
	case len(all) > 0:
		last := all[len(all)-1]
		d.Stamp, d.URL, owner = last.Stamp, last.URL, last.Partner
	case archived:
		d.Stamp = ended.Notice.Stamp
	}
	if pending == nil && archived && ended.Notice.Stamp.Equal(d.Stamp) {
		d.Schedule, d.URL, owner = ended.Notice.Schedule, ended.Notice.URL, ended.Partner
	}
	if owner == "" && storeState == StateParked {
		// Parked before its first attempt: only the parked listing knows
		// its partner.
		if owner, err = p.parkedOwner(ctx, id); err != nil {
			return PortalNotice{}, err
		}
	}
	if owner == "" || owner != c.Partner {
		return PortalNotice{}, notFound(id)
	}
	var attempts []Attempt
	for _, a := range all {
		// An id reused by another partner earlier: its attempts are not
		// this partner's to see.
		if a.Stamp.Equal(d.Stamp) && a.Partner == c.Partner {
			attempts = append(attempts, a)
		} else if a.Partner == c.Partner {
			d.Earlier++
		}
	}
	st, ok := StatusOf(id, pending, pa.N, pa.InFlight, attempts)
	st, ok = st.WithStoreState(storeState, ok)
	if !ok {
		return PortalNotice{}, notFound(id)
	}
	d.State, d.Attempts, d.URL = st.State, attempts, RedactURL(d.URL)
	if pending != nil {
		d.Pending = pa
		d.Pending.Notice = Notice{}
	}
	d.CanResend = archived && ended.Partner == c.Partner && st.State != StatePending && st.State != StateParked
	return d, nil
}

// errFound stops a scan that found what it looked for.
var errFound = errors.New("found")

// parkedOwner finds the partner of a parked notice id by listing what
// waits; "" if it is not there.
func (p *Portal) parkedOwner(ctx context.Context, id string) (string, error) {
	owner := ""
	err := p.c.Queue.EachPending(ctx, func(pn PendingNotice) error {
		if pn.Notice.ID == id {
			owner = pn.Notice.Partner
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return "", err
	}
	return owner, nil
}

func notFound(id string) error { return fmt.Errorf("notice %s: %w", strconv.Quote(id), ErrNotFound) }

// Body returns notice id with its body and headers, pending or ended, if it
// is c's; else an error wrapping ErrNotFound. The notice's own secrets are
// left out: they are the sender's, not the partner's.
func (p *Portal) Body(ctx context.Context, c Caller, id string) (Notice, State, error) {
	if err := ValidateID(id); err != nil {
		return Notice{}, "", notFound(id)
	}
	n, err := p.c.Queue.StoredNotice(ctx, id)
	switch {
	case err == nil:
		if n.Partner != c.Partner {
			return Notice{}, "", notFound(id)
		}
		st, err := p.c.Queue.State(ctx, id)
		if err != nil {
			st = StatePending // it was there a moment ago
		}
		n.Secrets = nil
		return n, st, nil
	case !errors.Is(err, ErrNotFound):
		return Notice{}, "", err
	}
	e, err := p.c.Log.Ended(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return Notice{}, "", notFound(id)
	case err != nil:
		return Notice{}, "", err
	case e.Partner != c.Partner:
		return Notice{}, "", notFound(id)
	}
	st := StateGaveUp
	if e.Outcome == Delivered {
		st = StateDelivered
	}
	e.Notice.Secrets = nil
	return e.Notice, st, nil
}

// Signature signs body of notice id for partner name as an attempt made
// at ts would be ("" if the partner has no secrets), so a receiver checks
// a pulled notice with the code that checks its deliveries.
func (p *Portal) Signature(name, id string, ts time.Time, body []byte) string {
	pa := p.partners[name]
	if pa == nil {
		return ""
	}
	return Sign(pa.Secrets, id, ts, body)
}

// allow takes one action of partner name from its bucket, or says how
// long to wait.
func (p *Portal) allow(name string) error {
	p.mu.Lock()
	lim := p.limits[name]
	if lim == nil {
		lim = rate.NewLimiter(p.c.ActionRate, p.c.ActionBurst)
		p.limits[name] = lim
	}
	p.mu.Unlock()
	r := lim.ReserveN(p.c.Now(), 1)
	if d := r.DelayFrom(p.c.Now()); d > 0 {
		r.CancelAt(p.c.Now())
		return &RateLimitError{RetryAfter: max(d, time.Second)}
	}
	return nil
}

// Resend sends c's ended notice id again with a fresh stamp, as `notifier
// retry` does, and logs who asked. Errors: ErrNotFound (not c's, or never
// ended), ErrDuplicate (it is pending again), ErrRateLimited, and
// ErrInvalidNotice if its URL is no longer under c's url_prefix.
func (p *Portal) Resend(ctx context.Context, c Caller, id string) (Notice, error) {
	if err := ValidateID(id); err != nil {
		return Notice{}, notFound(id)
	}
	e, err := p.c.Log.Ended(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		// A pending notice of c's is a conflict, anything else unknown.
		if n, err := p.Notice(ctx, c, id); err == nil && (n.State == StatePending || n.State == StateParked) {
			return Notice{}, fmt.Errorf("notice %s is %s: %w", id, n.State, ErrDuplicate)
		}
		return Notice{}, notFound(id)
	case err != nil:
		return Notice{}, err
	case e.Partner != c.Partner:
		return Notice{}, notFound(id)
	}
	if !p.prefixes.owns(c.Partner, e.Notice.URL) {
		return Notice{}, fmt.Errorf("%w: notice %s: its url is no longer under a url_prefix of partner %q", ErrInvalidNotice, id, c.Partner)
	}
	// A notice pending again is a conflict that costs no re-send.
	switch st, err := p.c.Queue.State(ctx, id); {
	case err != nil && !errors.Is(err, ErrNotFound):
		return Notice{}, err
	case err == nil && (st == StatePending || st == StateParked):
		return Notice{}, fmt.Errorf("notice %s is %s: %w", id, st, ErrDuplicate)
	}
	if err := p.allow(c.Partner); err != nil {
		p.c.Logger.Warn("portal: re-send refused: rate limit", "partner", c.Partner, "token", c.Token, "id", id)
		return Notice{}, err
	}
	ns := []Notice{e.Notice}
	errs, err := p.intake.Resend(ctx, ns)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return Notice{}, err
	}
	p.c.Logger.Info("portal: notice re-sent at the partner's request", "partner", c.Partner, "token", c.Token, "id", id)
	return ns[0], nil
}

// SendTest sends c a test notice: one attempt, no retries, to rawURL, which
// must be under one of c's url_prefix ("" picks the first prefix). The
// body is a small JSON object saying it is a test. Errors: ErrNoPrefix,
// ErrInvalidNotice (a URL not under c's prefixes), ErrRateLimited.
func (p *Portal) SendTest(ctx context.Context, c Caller, rawURL string) (Notice, error) {
	pa := p.partners[c.Partner]
	if pa == nil || len(pa.Prefixes) == 0 {
		return Notice{}, fmt.Errorf("partner %q: %w: a test notice goes only to the partner's own URLs", c.Partner, ErrNoPrefix)
	}
	if rawURL == "" {
		rawURL = pa.Prefixes[0]
	}
	if err := ValidateURL(rawURL); err != nil {
		return Notice{}, err
	}
	if !p.prefixes.owns(c.Partner, rawURL) {
		return Notice{}, fmt.Errorf("%w: url %s is not under a url_prefix of partner %q", ErrInvalidNotice, RedactURL(rawURL), c.Partner)
	}
	if err := p.allow(c.Partner); err != nil {
		p.c.Logger.Warn("portal: test notice refused: rate limit", "partner", c.Partner, "token", c.Token)
		return Notice{}, err
	}
	now := p.c.Now().UTC()
	id := "test_" + NewID()[2:]
	body := fmt.Sprintf(`{"type":"notifier.test","id":%q,"partner":%q,"sent_at":%q}`, id, c.Partner, now.Format(time.RFC3339))
	ns := []Notice{{ID: id, URL: rawURL, Body: []byte(body), Partner: c.Partner, Schedule: backoff.Schedule{0}}}
	errs, err := p.intake.Enqueue(ctx, ns)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return Notice{}, err
	}
	p.c.Logger.Info("portal: test notice sent at the partner's request", "partner", c.Partner, "token", c.Token, "id", id,
		"url", RedactURL(rawURL))
	return ns[0], nil
}

// Prefixes returns the url_prefix of partner name: where its test notices
// may go.
func (p *Portal) Prefixes(name string) []string {
	if pa := p.partners[name]; pa != nil {
		return pa.Prefixes
	}
	return nil
}
