package notifier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
)

// ErrBlocked is wrapped by every refusal of the SSRF guard, at dial time and
// at enqueue time, so callers can tell "the partner URL points inside our
// network" from an ordinary connection failure.
var ErrBlocked = errors.New("address blocked")

// ErrBadURL is wrapped by every error URLPolicy.Check returns, so a notice
// can be refused at enqueue time instead of failing every attempt later.
var ErrBadURL = errors.New("bad URL")

// ErrBadCIDR is wrapped by every error ParseCIDRs returns, so a typo in
// --allow-cidr stops start-up instead of silently allowing nothing.
var ErrBadCIDR = errors.New("bad CIDR")

// Guard refuses connections to addresses a partner URL must never reach:
// loopback, private networks, link-local (cloud metadata at 169.254.169.254),
// CGNAT, multicast and the other special-purpose ranges. It checks the
// resolved address in net.Dialer's Control hook, after DNS and just before
// connect, so a name that resolves (or re-resolves, as in DNS rebinding) to an
// internal address is refused without a second lookup that could disagree.
//
// The check only covers connections made with its dial func: a transport that
// takes a proxy from the environment (http.ProxyFromEnvironment) connects to
// the proxy instead and bypasses it, and following redirects lets a partner
// send a request anywhere the guard allows, so use neither.
//
// The zero Guard blocks every special-purpose range; a nil *Guard checks
// nothing. A Guard must not be changed while in use.
type Guard struct {
	// AllowPrivate turns the guard off: for tests and for deployments
	// whose partners are on the internal network.
	AllowPrivate bool
	// Allow lists ranges that are allowed even though they are blocked by
	// default (--allow-cidr), for an internal partner or a test server.
	// IPv4-mapped IPv6 prefixes match the IPv4 addresses they map.
	Allow []netip.Prefix
}

// blockedRange is a special-purpose range and the category an error names.
type blockedRange struct {
	prefix netip.Prefix
	why    string
}

// blockedRanges are checked in order, the first match names the category, so
// narrower ranges come before the ranges that contain them.
var blockedRanges = func() []blockedRange {
	list := []struct{ cidr, why string }{
		// IPv4.
		{"0.0.0.0/8", "unspecified"},
		{"127.0.0.0/8", "loopback"},
		{"10.0.0.0/8", "private"},
		{"172.16.0.0/12", "private"},
		{"192.168.0.0/16", "private"},
		{"169.254.0.0/16", "link-local"},
		{"100.64.0.0/10", "shared CGNAT"},
		{"224.0.0.0/4", "multicast"},
		{"255.255.255.255/32", "broadcast"},
		{"240.0.0.0/4", "reserved"},
		{"198.18.0.0/15", "benchmarking"},
		{"192.0.0.0/24", "IETF protocol assignments"},
		{"192.0.2.0/24", "documentation"},
		{"198.51.100.0/24", "documentation"},
		{"203.0.113.0/24", "documentation"},
		// IPv6. IPv4-mapped addresses are unmapped before the lookup.
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible"},
		{"fc00::/7", "private"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local"},
		{"ff00::/8", "multicast"},
		{"2001:db8::/32", "documentation"},
		// Tunnels whose gateways reach IPv4 addresses the guard cannot
		// see: Teredo (the client's IPv4 is obfuscated) and local-use
		// NAT64 (RFC 8215), which a site routes as it likes.
		{"2001::/32", "Teredo"},
		{"64:ff9b:1::/48", "local-use NAT64"},
	}
	out := make([]blockedRange, len(list))
	for i, r := range list {
		out[i] = blockedRange{netip.MustParsePrefix(r.cidr), r.why}
	}
	return out
}()

// Prefixes whose addresses carry an IPv4 address that a gateway will connect
// to: the guard checks that address too.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: IPv4 in the last 32 bits
	sixToFour = netip.MustParsePrefix("2002::/16")    // RFC 3056: IPv4 in bits 16-47
)

// CheckAddr returns nil if ip may be dialled, else an error wrapping
// ErrBlocked that names the category of the range ("loopback",
// "private", ...). IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked
// as the IPv4 address they map, zones are ignored, and the IPv4 address
// embedded in a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address is checked
// as well, since a gateway would connect to it.
func (g *Guard) CheckAddr(ip netip.Addr) error {
	if why := g.refuse(ip); why != "" {
		return fmt.Errorf("%s: %w (%s)", ip, ErrBlocked, why)
	}
	return nil
}

// refuse returns the category of the blocked range ip is in, or "".
func (g *Guard) refuse(ip netip.Addr) string {
	if g == nil || g.AllowPrivate {
		return ""
	}
	if !ip.IsValid() {
		return "not an IP address"
	}
	// Prefix.Contains is false for any address with a zone, so drop it.
	ip = ip.Unmap().WithZone("")
	for _, p := range g.Allow {
		if unmapPrefix(p).Contains(ip) {
			return ""
		}
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(ip) {
			return r.why
		}
	}
	if v4, via, ok := embeddedIPv4(ip); ok {
		if why := g.refuse(v4); why != "" {
			return why + " via " + via
		}
	}
	return ""
}

// embeddedIPv4 returns the IPv4 address a NAT64 or 6to4 address carries.
func embeddedIPv4(ip netip.Addr) (netip.Addr, string, bool) {
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64", true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4", true
	}
	return netip.Addr{}, "", false
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) into the
// IPv4 prefix it maps, so it matches unmapped addresses.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p
}

// Control is a net.Dialer Control hook. The dialer has resolved the name by
// then, so address is host:port with an IP literal host; anything else (a
// name, a Unix socket path) is refused. The error names the category but not
// the address: net.Dialer wraps it in a *net.OpError that does, giving
// "dial tcp 10.0.0.1:80: address blocked (private)".
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	if g == nil || g.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w (not an IP address)", ErrBlocked)
	}
	if why := g.refuse(ap.Addr()); why != "" {
		return fmt.Errorf("%w (%s)", ErrBlocked, why)
	}
	return nil
}

// DialContext returns a dial func for http.Transport.DialContext that dials
// with a copy of base (a zero net.Dialer if base is nil) checked by g. The
// check is installed as the copy's ControlContext, because a Dialer ignores
// Control when ControlContext is set; a Control or ControlContext base
// already had still runs, after the check. g is copied too, so later changes
// to it do not affect the returned func. A nil g returns base's dial
// unchecked.
func (g *Guard) DialContext(base *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := new(net.Dialer)
	if base != nil {
		*d = *base
	}
	if g == nil {
		return d.DialContext
	}
	guard := &Guard{AllowPrivate: g.AllowPrivate, Allow: slices.Clone(g.Allow)}
	nextCtx, next := d.ControlContext, d.Control
	d.Control = nil
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		if err := guard.Control(network, address, c); err != nil {
			return err
		}
		switch {
		case nextCtx != nil:
			return nextCtx(ctx, network, address, c)
		case next != nil:
			return next(network, address, c)
		}
		return nil
	}
	return d.DialContext
}

// ParseCIDRs reads --allow-cidr values into prefixes for Guard.Allow. A bare
// address is taken as a single-address prefix (/32 or /128); host bits are
// cleared and IPv4-mapped IPv6 prefixes become IPv4 prefixes, so the result
// matches what the guard compares. Errors wrap ErrBadCIDR.
func ParseCIDRs(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				return nil, fmt.Errorf("allow-cidr %q: %w", s, ErrBadCIDR)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("allow-cidr %q: %w: want an address or address/bits", s, ErrBadCIDR)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, unmapPrefix(p.Masked()))
	}
	return out, nil
}

// URLPolicy is what a partner URL must satisfy at enqueue time. It catches
// what can be known without DNS (a literal internal address, user info, a
// scheme net/http would not use); names are resolved, and checked by the
// Guard, only when an attempt dials.
type URLPolicy struct {
	// HTTPSOnly refuses http URLs.
	HTTPSOnly bool
	// MaxLen bounds the URL's length in bytes; 0 means MaxURLLen (2048).
	MaxLen int
	// Guard, when not nil, checks a host that is an IP literal.
	Guard *Guard
}

// Check returns nil if raw may be enqueued, else an error wrapping ErrBadURL
// (and ErrBlocked too when the Guard refuses an IP literal host) that never
// contains the URL, which may carry tokens. raw must be an absolute http or https URL
// with a host and no user info. A fragment is allowed: net/http never sends
// it, so it cannot reach a partner or steer a request.
//
// A host that is an IP address written in any form other than canonical
// dotted decimal (127.1, 0x7f000001, 0177.0.0.1, 2130706433, fullwidth
// digits, a trailing dot) is refused: libc and browsers read those as
// addresses while Go's dialer treats them as names, so what was checked
// would not be what is dialled.
func (p URLPolicy) Check(raw string) error {
	maxLen := p.MaxLen
	if maxLen <= 0 {
		maxLen = MaxURLLen
	}
	if len(raw) > maxLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadURL, len(raw), maxLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL; its Err does not.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.HTTPSOnly:
		return fmt.Errorf("%w: scheme http, want https", ErrBadURL)
	case u.Scheme == "http":
	default:
		return fmt.Errorf("%w: scheme must be http or https", ErrBadURL)
	}
	if u.User != nil {
		return fmt.Errorf("%w: must not carry user info", ErrBadURL)
	}
	return p.checkHost(u)
}

// checkHost checks u's host: present, and either a name or an IP literal in
// canonical form that the Guard allows.
func (p URLPolicy) checkHost(u *url.URL) error {
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: no host", ErrBadURL)
	}
	if strings.HasPrefix(u.Host, "[") {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return fmt.Errorf("%w: bad IPv6 host", ErrBadURL)
		}
		return p.checkIP(ip)
	}
	// A zone or any other '%' has no place in a name or an IPv4 address.
	if strings.ContainsAny(host, "%:") {
		return fmt.Errorf("%w: bad host", ErrBadURL)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		return p.checkIP(ip)
	}
	if folded := foldHost(host); endsInNumber(folded) {
		if ip, ok := parseInetAton(folded); ok {
			return fmt.Errorf("%w: non-canonical IPv4 host (reads as %s)", ErrBadURL, ip)
		}
		return fmt.Errorf("%w: non-canonical IPv4 host", ErrBadURL)
	}
	return nil
}

func (p URLPolicy) checkIP(ip netip.Addr) error {
	if err := p.Guard.CheckAddr(ip); err != nil {
		return fmt.Errorf("%w: host %w", ErrBadURL, err)
	}
	return nil
}

// foldHost lowercases ASCII letters and maps the fullwidth forms of ASCII and
// the ideographic full stops to ASCII, as IDNA mapping does, so "１２７．１"
// is seen as the number it is to a browser or an IDNA-aware dialer.
func foldHost(h string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		case r >= 0xFF21 && r <= 0xFF3A: // fullwidth A-Z
			return r - 0xFF21 + 'a'
		case r >= 0xFF01 && r <= 0xFF5E: // fullwidth ASCII
			return r - 0xFEE0
		case r == 0x3002 || r == 0xFF61: // ideographic and halfwidth full stop
			return '.'
		}
		return r
	}, h)
}

// endsInNumber reports whether h's last label (ignoring trailing dots) is a
// decimal or 0x-hex number, which is when the WHATWG URL standard parses a
// host as IPv4. No top-level domain is numeric, so no name is lost.
func endsInNumber(h string) bool {
	h = strings.TrimRight(h, ".")
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(last, "0x"); ok {
		return strings.Trim(rest, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

// parseInetAton reads an IPv4 address the way inet_aton and browsers do:
// one to four parts, each decimal, octal (leading 0) or hex (0x), the last
// filling the remaining bytes. Trailing dots are ignored.
func parseInetAton(h string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimRight(h, "."), ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, s := range parts {
		n, ok := parseInetPart(s)
		if !ok {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 0xff {
				return netip.Addr{}, false
			}
			v = v<<8 | n
			continue
		}
		bits := 8 * (5 - len(parts)) // what the last part fills
		if n >= 1<<bits {
			return netip.Addr{}, false
		}
		v = v<<bits | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// parseInetPart reads one part of an inet_aton address; values above 32 bits
// are refused rather than overflowed.
func parseInetPart(s string) (uint64, bool) {
	base := uint64(10)
	switch {
	case strings.HasPrefix(s, "0x"):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	case s == "":
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		if v = v*base + d; v > 0xffffffff {
			return 0, false
		}
	}
	return v, true
}

// PolicySummary is the address policy serve publishes, so that enqueue,
// the API and the client refuse at once a URL that serve would refuse
// when it dials.
type PolicySummary struct {
	AllowPrivate bool     `json:"allow_private,omitempty"`
	AllowCIDR    []string `json:"allow_cidr,omitempty"`
	HTTPSOnly    bool     `json:"https_only,omitempty"`
	// MaxBody lowers the body limit (MaxBodyBytes) when positive.
	MaxBody int `json:"max_body,omitempty"`
}

// Policy returns the URL policy p describes.
func (p PolicySummary) Policy() (URLPolicy, error) {
	allow, err := ParseCIDRs(p.AllowCIDR)
	if err != nil {
		return URLPolicy{}, err
	}
	return URLPolicy{HTTPSOnly: p.HTTPSOnly, Guard: &Guard{AllowPrivate: p.AllowPrivate, Allow: allow}}, nil
}
