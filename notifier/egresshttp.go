package notifier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync/atomic"
	"time"
)

// OutboundOptions are the settings of one outbound HTTP transport.
type OutboundOptions struct {
	// Timeout (DefaultTimeout if zero) bounds connecting and the TLS
	// handshake, at most 10 s each.
	Timeout time.Duration
	// MaxIdlePerHost idle connections (at least 2) are kept per host.
	MaxIdlePerHost int
	// Guard checks every connection on its resolved address at dial time,
	// and the target of every request sent through Proxy before the proxy
	// is asked for it (nil: no check).
	Guard *Guard
	// Proxy, if set, carries every request: CONNECT for https, the
	// absolute URL for http. Its user info is sent as Proxy-Authorization.
	Proxy *url.URL
	// TLS replaces the default TLS settings (system roots, TLS 1.2 or
	// later) when set.
	TLS *tls.Config
}

// newOutboundTransport returns the transport of NewOutboundClient and of
// every partner route: proxy environment variables are never read (a proxy
// would connect on our behalf, past the guard); o.Proxy is the only proxy.
func newOutboundTransport(o OutboundOptions) *http.Transport {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	dial := dialer.DialContext
	if o.Guard != nil {
		dial = o.Guard.DialContext(dialer)
	}
	tlsConf := o.TLS
	if tlsConf == nil {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &http.Transport{
		Proxy:                 proxyFunc(o.Proxy, o.Guard),
		DialContext:           dial,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   max(o.MaxIdlePerHost, 2),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(timeout, 10*time.Second),
		ExpectContinueTimeout: time.Second,
	}
}

// proxyFunc is http.Transport.Proxy for proxy: nil without one. With one,
// the guard checks each request's target before the proxy is asked for it,
// since the proxy, not our dialer, connects to it: an IP literal as it is,
// a name by every address it resolves to here.
func proxyFunc(proxy *url.URL, g *Guard) func(*http.Request) (*url.URL, error) {
	if proxy == nil {
		return nil
	}
	return func(req *http.Request) (*url.URL, error) {
		if err := g.checkTarget(req.Context(), req.URL.Hostname()); err != nil {
			return nil, err
		}
		return proxy, nil
	}
}

// checkTarget checks host, a request's target, with the guard: an IP
// literal as it is, a name by every address it resolves to (any blocked
// one refuses it). Its error wraps ErrBlocked when the guard refuses.
func (g *Guard) checkTarget(ctx context.Context, host string) error {
	if g == nil || g.AllowPrivate {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := g.CheckAddr(ip); err != nil {
			return fmt.Errorf("proxy target %w", err)
		}
		return nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("proxy target: resolve %s: %w", host, bare(err))
	}
	for _, ip := range ips {
		if err := g.CheckAddr(ip); err != nil {
			return fmt.Errorf("proxy target %s resolves to %w", host, err)
		}
	}
	return nil
}

// ErrProxyBlocked is the error of an attempt whose proxy's own address the
// guard refused: the operator's setting, not the notice, is at fault, so
// it is an ordinary failure (retried), not a blocked notice.
var ErrProxyBlocked = errors.New("egress proxy address blocked by the address guard (allow it with --allow-cidr)")

// proxyErr turns the guard's refusal of the proxy connection itself into
// ErrProxyBlocked; any other error is returned as is.
func proxyErr(err error) error {
	var op *net.OpError
	if err != nil && errors.Is(err, ErrBlocked) && errors.As(err, &op) && op.Op == "proxyconnect" {
		return ErrProxyBlocked
	}
	return err
}

// proxied sends with tr and reports a proxy the guard refused as
// ErrProxyBlocked. Like roundTripper, it hides tr's CloseIdleConnections
// from retryablehttp.
type proxied struct{ tr *http.Transport }

// RoundTrip implements http.RoundTripper.
func (p proxied) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := p.tr.RoundTrip(req)
	return resp, proxyErr(err)
}

// EgressOptions are what NewEgress builds serve's outbound clients from.
type EgressOptions struct {
	// Timeout, MaxIdlePerHost and Guard are every client's (see
	// OutboundOptions).
	Timeout        time.Duration
	MaxIdlePerHost int
	Guard          *Guard
	// Proxy is --egress-proxy: every request goes through it unless its
	// partner names its own (nil: direct).
	Proxy *url.URL
	// Partners get a client of their own when they have egress settings.
	Partners []*Partner
	// Logger receives warnings about certificates; nil discards.
	Logger *slog.Logger
	// Now is the clock for expiry warnings; nil: time.Now.
	Now func() time.Time
}

// Egress holds the HTTP clients serve sends attempts with: one for notices
// of no partner and partners without egress settings, and one per partner
// with settings of its own. Run reads a partner's certificate files again
// when they change. Its clients never follow redirects.
type Egress struct {
	def    *http.Client
	routes map[string]*route
	log    *slog.Logger
	now    func() time.Time
}

// route is the client of one partner with egress settings: its transport is
// rebuilt when its certificate files change, and the old one's idle
// connections are closed, so the next connection uses the new files.
type route struct {
	partner string
	cfg     PartnerEgress
	base    OutboundOptions
	files   atomic.Pointer[tlsFiles]
	tr      atomic.Pointer[http.Transport]
	failed  [3]fileStamp // the stamps of files that last failed to load
}

// reloadEvery is how often Run looks for changed certificate files.
const reloadEvery = time.Second

// NewEgress builds the clients and reads every partner's certificate files,
// warning of any certificate that ends within ExpiryWarning. It refuses a
// proxy whose address the guard blocks, which would fail every attempt.
func NewEgress(ctx context.Context, o EgressOptions) (*Egress, error) {
	e := &Egress{routes: map[string]*route{}, log: o.Logger, now: o.Now}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	base := OutboundOptions{Timeout: o.Timeout, MaxIdlePerHost: o.MaxIdlePerHost, Guard: o.Guard, Proxy: o.Proxy}
	if err := checkProxy(ctx, o.Guard, o.Proxy, "--egress-proxy"); err != nil {
		return nil, err
	}
	e.def = outboundClient(proxied{newOutboundTransport(base)})
	for _, p := range o.Partners {
		if p.Egress.IsZero() {
			continue
		}
		r := &route{partner: p.Name, cfg: p.Egress, base: base}
		if p.Egress.Proxy != nil {
			if err := checkProxy(ctx, o.Guard, p.Egress.Proxy, "partner "+p.Name+" proxy"); err != nil {
				return nil, err
			}
			r.base.Proxy = p.Egress.Proxy
		}
		f, err := loadTLSFiles(p.Egress)
		if err != nil {
			return nil, fmt.Errorf("partner %s: %w", p.Name, err)
		}
		r.install(f)
		e.routes[p.Name] = r
		e.warnExpiring(f.expiries(p.Name, p.Egress))
	}
	return e, nil
}

// checkProxy refuses a proxy whose address (an IP literal, or what its
// name resolves to now) the guard blocks.
func checkProxy(ctx context.Context, g *Guard, proxy *url.URL, what string) error {
	if proxy == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := g.checkTarget(ctx, proxy.Hostname()); errors.Is(err, ErrBlocked) {
		return fmt.Errorf("%w: %s %s: address blocked by the guard; allow it with --allow-cidr", ErrConfig, what, proxy.Redacted())
	}
	return nil
}

// outboundClient wraps rt in a client that never follows redirects (the
// 3xx is the response).
func outboundClient(rt http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// install makes f the route's files and builds a transport with them,
// closing the idle connections of the one it replaces.
func (r *route) install(f *tlsFiles) {
	r.files.Store(f)
	conf := &tls.Config{MinVersion: max(r.cfg.MinTLS, tls.VersionTLS12), ServerName: r.cfg.ServerName, RootCAs: f.roots}
	if r.cfg.ClientCert != "" {
		// Read at each handshake, so a reload applies to every new
		// connection of every transport this route built.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.files.Load().cert, nil
		}
	}
	o := r.base
	o.TLS = conf
	if old := r.tr.Swap(newOutboundTransport(o)); old != nil {
		old.CloseIdleConnections()
	}
}

// RoundTrip sends req with the route's current transport.
func (r *route) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.tr.Load().RoundTrip(req)
	return resp, proxyErr(err)
}

// Client returns the client for attempts of partner ("" or a partner
// without egress settings: the default one).
func (e *Egress) Client(partner string) *http.Client {
	if r, ok := e.routes[partner]; ok {
		return outboundClient(r)
	}
	return e.def
}

// routed lists the partners with a client of their own.
func (e *Egress) routed() []string {
	names := make([]string, 0, len(e.routes))
	for n := range e.routes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// CertExpiries lists every configured certificate and when it ends, as
// last read.
func (e *Egress) CertExpiries() []CertExpiry {
	var out []CertExpiry
	for _, n := range e.routed() {
		r := e.routes[n]
		out = append(out, r.files.Load().expiries(r.partner, r.cfg)...)
	}
	return out
}

// Run reads a partner's certificate files again within a second of a
// change, until ctx ends. Files that do not load (a rotation half written,
// a key others may read) are logged and the old ones kept.
func (e *Egress) Run(ctx context.Context) error {
	if len(e.routes) == 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(reloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.Reload()
		}
	}
}

// Reload reads again the certificate files that changed since they were
// last read.
func (e *Egress) Reload() {
	for _, n := range e.routed() {
		r := e.routes[n]
		var now [3]fileStamp
		for i, p := range []string{r.cfg.ClientCert, r.cfg.ClientKey, r.cfg.CAFile} {
			now[i], _ = stampOf(p) // a missing file shows as a change, and fails to load below
		}
		if now == r.files.Load().stamps || now == r.failed {
			continue
		}
		f, err := loadTLSFiles(r.cfg)
		if err != nil {
			r.failed = now
			e.log.Warn("certificate files changed but do not load; keeping the ones loaded before", "partner", r.partner, "err", err)
			continue
		}
		r.install(f)
		e.log.Info("reloaded certificate files", "partner", r.partner)
		e.warnExpiring(f.expiries(r.partner, r.cfg))
	}
}

// warnExpiring logs a warning for each certificate that ends within
// ExpiryWarning, or has ended.
func (e *Egress) warnExpiring(list []CertExpiry) {
	now := e.now()
	for _, c := range list {
		if left := c.NotAfter.Sub(now); left < ExpiryWarning {
			e.log.Warn("certificate expires soon", "partner", c.Partner, "kind", c.Kind, "file", c.File,
				"not_after", c.NotAfter.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
		}
	}
}
