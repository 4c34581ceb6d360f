package notifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/time/rate"

	"github.com/notifier/notifier/backoff"
)

// ErrConfig is wrapped by every error LoadConfig returns for a bad file.
var ErrConfig = errors.New("invalid config")

// Partner is a receiver of notices with its own rules: which URLs are its,
// how its attempts are signed and judged, and how hard it may be pushed.
// Its fields are read-only once the Partner is in use.
type Partner struct {
	// Name identifies it in `enqueue --partner`, the attempt log and
	// `partner list`.
	Name string
	// Prefixes claim notices whose URL is under one of them: same scheme,
	// host and port, path under the prefix's at a segment boundary (see
	// match.go; the longest matching prefix of any partner wins).
	Prefixes []string
	// Secrets sign every attempt (Standard Webhooks), on top of a
	// notice's own.
	Secrets []Secret
	// Success judges its replies unless a notice has its own rule.
	Success SuccessRule
	// Schedule is given at enqueue to its notices that name none; nil:
	// the serve's default.
	Schedule backoff.Schedule
	// Jitter delays each retry by up to this fraction of the gap before
	// its slot, so a partner's failed burst does not come back as one.
	Jitter float64
	// Timeout bounds each attempt; 0: the serve's --timeout.
	Timeout time.Duration
	// MaxConcurrent bounds its attempts in flight, so a partner that hangs
	// holds at most this many workers; 0: the serve's default.
	MaxConcurrent int
	// Rate bounds its attempts per second in each serve (0: none), with
	// bursts of Burst.
	Rate  float64
	Burst int
	// PauseAfter pauses it after this many failed attempts in a row (0:
	// never); PauseOnGone pauses it when it answers 410 Gone, instead of
	// giving that notice up.
	PauseAfter  int
	PauseOnGone bool
	// Egress is how its attempts reach it (TLS, proxy; see egress.go).
	Egress PartnerEgress
	// PortalTokens let this partner into the partner portal, each one
	// seeing only this partner's notices (see Portal). Several are valid
	// at once, so a partner can rotate. Never logged or published.
	PortalTokens []string

	slots *slots
	lim   *rate.Limiter
}

// slots bounds the attempts in flight to one partner or host. streak
// counts attempts turned away since one last got a slot: they are re-armed
// ever later (1 s, doubling per limit's worth, up to 30 s), so a partner
// that hangs with a large backlog costs Redis a bounded rate of re-arms
// instead of every waiting notice once a second.
type slots struct {
	sem    chan struct{}
	streak atomic.Int64
}

func newSlots(n int) *slots { return &slots{sem: make(chan struct{}, n)} }

// maxDeferral bounds how long an attempt turned away by its partner's limit
// waits before it asks again.
const maxDeferral = 30 * time.Second

// Config is what serve --config holds.
type Config struct {
	Partners []*Partner
	// AlertURL receives a POST for every notice given up; "" sends none.
	AlertURL     string
	AlertTimeout time.Duration
}

type rawConfig struct {
	Alerts struct {
		URL     string `toml:"url"`
		Timeout string `toml:"timeout"`
	} `toml:"alerts"`
	Partner []rawPartner `toml:"partner"`
}

type rawPartner struct {
	Name          string   `toml:"name"`
	URLPrefix     []string `toml:"url_prefix"`
	Secrets       []string `toml:"secrets"`
	Success       string   `toml:"success"`
	Schedule      string   `toml:"schedule"`
	Jitter        string   `toml:"jitter"`
	Timeout       string   `toml:"timeout"`
	MaxConcurrent int      `toml:"max_concurrent"`
	Rate          float64  `toml:"rate"`
	Burst         int      `toml:"burst"`
	PauseAfter    int      `toml:"pause_after"`
	PauseOnGone   bool     `toml:"pause_on_gone"`
	rawEgress              // client_cert, client_key, ca_file, server_name, min_tls, proxy
	// PortalTokens and PortalTokensFile (one token a line) are read
	// together; see portaltokens.go.
	PortalTokens     []string `toml:"portal_tokens"`
	PortalTokensFile string   `toml:"portal_tokens_file"`
}

// LoadConfig reads a TOML config file (see deploy/notifier.toml). Unknown
// keys are errors, so a typo never silently drops a setting.
func LoadConfig(path string) (*Config, error) {
	var raw rawConfig
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, oneLine(err))
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%w: %s: unknown key %q", ErrConfig, path, und[0].String())
	}
	c, err := raw.build(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	return c, nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

// build checks raw; dir is the config file's directory, against which
// relative file names are read.
func (raw *rawConfig) build(dir string) (*Config, error) {
	c := &Config{AlertURL: raw.Alerts.URL, AlertTimeout: 10 * time.Second}
	if c.AlertURL != "" {
		if err := ValidateURL(c.AlertURL); err != nil {
			return nil, fmt.Errorf("alerts.url: %v", err)
		}
	}
	if raw.Alerts.Timeout != "" {
		d, err := time.ParseDuration(raw.Alerts.Timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("alerts.timeout %q: want a positive duration such as 5s", raw.Alerts.Timeout)
		}
		c.AlertTimeout = d
	}
	seen := map[string]bool{}
	for i, rp := range raw.Partner {
		p, err := rp.build(dir)
		if err != nil {
			return nil, fmt.Errorf("partner %d (%q): %v", i+1, rp.Name, err)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("partner %q is defined twice", p.Name)
		}
		seen[p.Name] = true
		c.Partners = append(c.Partners, p)
	}
	if err := checkPortalTokens(c.Partners); err != nil {
		return nil, err
	}
	return c, nil
}

func (rp rawPartner) build(dir string) (*Partner, error) {
	if err := ValidatePartnerName(rp.Name); err != nil {
		return nil, err
	}
	p := &Partner{Name: rp.Name, MaxConcurrent: rp.MaxConcurrent, Rate: rp.Rate, Burst: rp.Burst,
		PauseAfter: rp.PauseAfter, PauseOnGone: rp.PauseOnGone}
	for _, pre := range rp.URLPrefix {
		if err := validatePrefix(pre); err != nil {
			return nil, fmt.Errorf("url_prefix: %v", err)
		}
		p.Prefixes = append(p.Prefixes, pre)
	}
	for i, s := range rp.Secrets {
		sec, err := ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secrets[%d]: %v", i, err) // never the secret itself
		}
		p.Secrets = append(p.Secrets, sec)
	}
	if len(p.Secrets) > 0 && len(p.Prefixes) == 0 {
		// Its signatures would go to whatever URL a notice naming it has.
		return nil, errors.New("secrets need url_prefix: a partner's signatures go only to its own URLs")
	}
	if rp.Success != "" {
		r, err := ParseSuccessRule(rp.Success)
		if err != nil {
			return nil, fmt.Errorf("success: %v", err)
		}
		p.Success = r
	}
	if rp.Schedule != "" {
		s, err := backoff.Parse(rp.Schedule)
		if err != nil {
			return nil, fmt.Errorf("schedule: %v", err)
		}
		p.Schedule = s
	}
	if rp.Jitter != "" {
		j, err := backoff.ParseJitter(rp.Jitter)
		if err != nil {
			return nil, fmt.Errorf("jitter: %v", err)
		}
		p.Jitter = j
	}
	if rp.Timeout != "" {
		d, err := time.ParseDuration(rp.Timeout)
		if err != nil || d <= 0 || d > 10*time.Minute {
			return nil, fmt.Errorf("timeout %q: want a duration between 1ms and 10m", rp.Timeout)
		}
		p.Timeout = d
	}
	switch {
	case rp.MaxConcurrent < 0:
		return nil, errors.New("max_concurrent must not be negative")
	case rp.Rate < 0:
		return nil, errors.New("rate must not be negative")
	case rp.Burst < 0:
		return nil, errors.New("burst must not be negative")
	case rp.PauseAfter < 0:
		return nil, errors.New("pause_after must not be negative")
	}
	eg, err := rp.rawEgress.build(len(p.Prefixes) > 0)
	if err != nil {
		return nil, err
	}
	p.Egress = eg
	tokens, err := rp.portalTokens(dir)
	if err != nil {
		return nil, err
	}
	p.PortalTokens = tokens
	return p, nil
}

// ValidatePartnerName reports whether name can name a partner: 1 to 64
// letters, digits, '.', '_' or '-'.
func ValidatePartnerName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("partner name %q: want 1 to 64 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("partner name %q: only letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// PartnerSummary is what serve publishes of a partner for enqueue and
// `partner list`: everything but its secrets.
type PartnerSummary struct {
	Name          string   `json:"name"`
	URLPrefix     []string `json:"url_prefix,omitempty"`
	Schedule      string   `json:"schedule,omitempty"`
	Success       string   `json:"success,omitempty"`
	Signed        bool     `json:"signed"`
	Timeout       string   `json:"timeout,omitempty"`
	MaxConcurrent int      `json:"max_concurrent,omitempty"`
	Rate          float64  `json:"rate,omitempty"`
	PauseAfter    int      `json:"pause_after,omitempty"`
	PauseOnGone   bool     `json:"pause_on_gone,omitempty"`
}

// Summary returns p's summary.
func (p *Partner) Summary() PartnerSummary {
	s := PartnerSummary{Name: p.Name, URLPrefix: p.Prefixes, Signed: len(p.Secrets) > 0,
		MaxConcurrent: p.MaxConcurrent, Rate: p.Rate, PauseAfter: p.PauseAfter, PauseOnGone: p.PauseOnGone}
	if p.Schedule != nil {
		s.Schedule = p.Schedule.String()
	}
	if !p.Success.IsZero() {
		s.Success = p.Success.String()
	}
	if p.Timeout > 0 {
		s.Timeout = p.Timeout.String()
	}
	return s
}

// Partners finds the partner of each notice and holds the per-partner
// limits of one serve. Notices of no partner are limited per URL host, so
// one dead host cannot take every worker either.
type Partners struct {
	byName map[string]*Partner
	// prefixes finds a notice's partner by its URL (see match.go).
	prefixes *prefixIndex
	// hostLimit bounds the attempts in flight to one host of no partner,
	// and to a partner without MaxConcurrent.
	hostLimit int

	mu    sync.Mutex
	hosts map[string]*slots
}

// NewPartners indexes ps. defaultLimit bounds the attempts in flight to a
// partner without MaxConcurrent and to each host of notices without a
// partner (0: unbounded).
func NewPartners(ps []*Partner, defaultLimit int) *Partners {
	r := &Partners{byName: map[string]*Partner{}, hostLimit: defaultLimit, hosts: map[string]*slots{}}
	prefixes := make(map[string][]string, len(ps))
	for _, p := range ps {
		r.byName[p.Name] = p
		if n := p.MaxConcurrent; n > 0 || defaultLimit > 0 {
			if n <= 0 {
				n = defaultLimit
			}
			p.slots = newSlots(n)
		}
		if p.Rate > 0 {
			p.lim = rate.NewLimiter(rate.Limit(p.Rate), max(p.Burst, 1))
		}
		prefixes[p.Name] = p.Prefixes
	}
	r.prefixes = newPrefixIndex(prefixes)
	return r
}

// Get returns the partner called name.
func (r *Partners) Get(name string) (*Partner, bool) {
	if r == nil {
		return nil, false
	}
	p, ok := r.byName[name]
	return p, ok
}

// Names lists the partners, sorted.
func (r *Partners) Names() []string {
	if r == nil {
		return nil
	}
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// acquire takes a slot for an attempt to n under p (nil: n's host). It
// waits at most slotWait: when the partner stays at its limit it says how
// long the attempt should wait, re-armed, before asking again.
func (r *Partners) acquire(p *Partner, n *Notice) (release func(), retryIn time.Duration, ok bool) {
	var sl *slots
	if p != nil {
		sl = p.slots
	} else if r != nil && r.hostLimit > 0 {
		host := n.URL
		if u, err := url.Parse(n.URL); err == nil {
			host = u.Host
		}
		r.mu.Lock()
		sl = r.hosts[host]
		if sl == nil {
			sl = newSlots(r.hostLimit)
			r.hosts[host] = sl
		}
		r.mu.Unlock()
	}
	if sl == nil {
		return func() {}, 0, true
	}
	select {
	case sl.sem <- struct{}{}:
		sl.streak.Store(0)
		return func() { <-sl.sem }, 0, true
	default:
	}
	// A healthy partner frees a slot within milliseconds: wait a little
	// before re-arming, so a burst to one fast partner is not pushed a
	// second back. Once attempts are being turned away (the partner holds
	// its slots longer than that), nobody waits: a worker never sits on a
	// slow partner's backlog while other partners' attempts queue.
	if sl.streak.Load() > 0 {
		return nil, sl.deferral(), false
	}
	t := time.NewTimer(slotWait)
	defer t.Stop()
	select {
	case sl.sem <- struct{}{}:
		sl.streak.Store(0)
		return func() { <-sl.sem }, 0, true
	case <-t.C:
		return nil, sl.deferral(), false
	}
}

// deferral counts an attempt turned away and says how long it waits.
func (sl *slots) deferral() time.Duration {
	turned := sl.streak.Add(1)
	shift := min(turned/int64(cap(sl.sem)), 5)
	return min(time.Second<<shift, maxDeferral)
}

// slotWait is how long an attempt waits for a slot of its partner before it
// is re-armed for later.
const slotWait = 100 * time.Millisecond

// Summaries returns the JSON summary of every partner by name, for
// publishing.
func (r *Partners) Summaries() (map[string]string, error) {
	out := map[string]string{}
	if r == nil {
		return out, nil
	}
	for name, p := range r.byName {
		b, err := json.Marshal(p.Summary())
		if err != nil {
			return nil, fmt.Errorf("partner %s: %w", name, err)
		}
		out[name] = string(b)
	}
	return out, nil
}

// ParseSummaries decodes what serve published (name -> JSON). Its error
// wraps ErrPublished.
func ParseSummaries(published map[string]string) (map[string]PartnerSummary, error) {
	out := make(map[string]PartnerSummary, len(published))
	for name, js := range published {
		var s PartnerSummary
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			return nil, publishedError{fmt.Errorf("published partner %s: %w", name, err)}
		}
		s.Name = name
		out[name] = s
	}
	return out, nil
}
