package notifier

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/notifier/notifier/backoff"
)

// A partner's url_prefix claims the URLs under it. Matching is on the
// parsed URL, never on its text: the scheme, host and port must be the
// prefix's (scheme and host case-insensitively, a missing port read as 80
// for http and 443 for https, a host's trailing dot ignored), and the path
// must be under the prefix's path at a segment boundary: "/cb" takes "/cb"
// and "/cb/x" but not "/cbx"; "/cb/", "/" or no path take everything under
// them. Paths are compared decoded and cleaned of dot segments, so
// "/cb/../admin" is not under "/cb". A URL's query string takes no part; a
// prefix may not have one (or a fragment): the config refuses it rather
// than ignore it. Of the prefixes that match, the one with the longest
// path wins, ties going to the partner whose name sorts first.
//
// A notice that names its partner must have a URL under one of the
// partner's prefixes, or it would carry the partner's signatures to any
// host: enqueue refuses it (ApplyPartner). A partner without url_prefix
// claims no URL and may be named for any; the config refuses secrets for
// such a partner, so its notices are never signed. At delivery, a notice stored
// before that check, naming a partner its URL is not under, is sent as a
// notice of no partner (Resolve): unsigned by the partner, not held to its
// limits or rules, and logged without its name.

// matchKey is a URL reduced to what matching compares.
type matchKey struct {
	scheme, host, port string
	// path is decoded and cleaned; it ends in "/" only if the URL's does.
	path string
}

// parseMatchKey reduces raw to its matchKey; ok is false if raw is not an
// absolute http or https URL.
func parseMatchKey(raw string) (k matchKey, u *url.URL, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return matchKey{}, nil, false
	}
	k.scheme = strings.ToLower(u.Scheme)
	switch port := u.Port(); {
	case port != "":
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return matchKey{}, nil, false
		}
		k.port = strconv.FormatUint(n, 10)
	case k.scheme == "https":
		k.port = "443"
	case k.scheme == "http":
		k.port = "80"
	}
	if k.scheme != "http" && k.scheme != "https" {
		return matchKey{}, nil, false
	}
	k.host = strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if k.host == "" {
		return matchKey{}, nil, false
	}
	k.path = "/"
	if u.Path != "" {
		k.path = path.Clean("/" + u.Path)
		if strings.HasSuffix(u.Path, "/") && k.path != "/" {
			k.path += "/"
		}
	}
	return k, u, true
}

// covers reports whether the URL t is under the prefix p.
func (p matchKey) covers(t matchKey) bool {
	if p.scheme != t.scheme || p.host != t.host || p.port != t.port {
		return false
	}
	if strings.HasSuffix(p.path, "/") {
		return strings.HasPrefix(t.path, p.path)
	}
	return t.path == p.path || strings.HasPrefix(t.path, p.path+"/")
}

// validatePrefix reports whether raw can be a url_prefix: an absolute URL
// as ValidateURL accepts, without a query string or fragment.
func validatePrefix(raw string) error {
	if err := ValidateURL(raw); err != nil {
		return err
	}
	_, u, ok := parseMatchKey(raw)
	if !ok {
		return fmt.Errorf("%q is not an absolute http(s) URL", RedactURL(raw))
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("%q: a query string or fragment takes no part in matching: remove it", RedactURL(raw))
	}
	return nil
}

// prefixIndex finds the partner whose url_prefix covers a URL.
type prefixIndex struct {
	// all is sorted longest path first, then by partner name, so the first
	// prefix that covers a URL is the one that wins.
	all []namedPrefix
	// declared counts each partner's prefixes, parsed or not: a partner
	// with none may be named for any URL, one whose prefixes all fail to
	// parse for none.
	declared map[string]int
}

type namedPrefix struct {
	name string
	key  matchKey
}

// newPrefixIndex indexes the prefixes of each partner by name. A prefix
// that does not parse, or has a query string, claims nothing.
func newPrefixIndex(prefixes map[string][]string) *prefixIndex {
	x := &prefixIndex{declared: make(map[string]int, len(prefixes))}
	for name, raws := range prefixes {
		x.declared[name] = len(raws)
		for _, raw := range raws {
			k, u, ok := parseMatchKey(raw)
			if !ok || u.RawQuery != "" || u.ForceQuery {
				continue
			}
			x.all = append(x.all, namedPrefix{name, k})
		}
	}
	slices.SortFunc(x.all, func(a, b namedPrefix) int {
		if c := cmp.Compare(len(b.key.path), len(a.key.path)); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return x
}

// longest returns the partner whose longest prefix covers rawURL.
func (x *prefixIndex) longest(rawURL string) (string, bool) {
	if x == nil {
		return "", false
	}
	t, _, ok := parseMatchKey(rawURL)
	if !ok {
		return "", false
	}
	for _, np := range x.all {
		if np.key.covers(t) {
			return np.name, true
		}
	}
	return "", false
}

// owns reports whether the partner called name may be named by a notice
// to rawURL: it has no prefixes, or one of them covers rawURL.
func (x *prefixIndex) owns(name, rawURL string) bool {
	if x == nil || x.declared[name] == 0 {
		return true
	}
	t, _, ok := parseMatchKey(rawURL)
	if !ok {
		return false
	}
	for _, np := range x.all {
		if np.name == name && np.key.covers(t) {
			return true
		}
	}
	return false
}

// Resolve returns n's partner: the one it names if n's URL is under one of
// its prefixes (or it has none), else the one whose longest prefix matches
// n's URL; nil if none. A notice that names a partner its URL is not under
// has no partner: it was stored before enqueue refused such notices, and
// must not be signed with the partner's secrets.
func (r *Partners) Resolve(n *Notice) *Partner {
	if r == nil {
		return nil
	}
	if n.Partner != "" {
		p := r.byName[n.Partner]
		if p == nil || !r.prefixes.owns(p.Name, n.URL) {
			return nil
		}
		return p
	}
	if name, ok := r.prefixes.longest(n.URL); ok {
		return r.byName[name]
	}
	return nil
}

// ErrUnknownPartner is returned by ApplyPartner and KnownPartner for a
// partner that serve has not published.
var ErrUnknownPartner = errors.New("unknown partner")

// KnownPartner is the one rule for naming a partner, whoever names it
// (enqueue by flag or by file, the API, partner pause): it must be one the
// running serve published. Else the error wraps ErrUnknownPartner and
// lists the names serve published, or says it published none.
func KnownPartner(published map[string]PartnerSummary, name string) error {
	if _, ok := published[name]; ok {
		return nil
	}
	if len(published) == 0 {
		return fmt.Errorf("partner %q: %w: no serve has published any partner (serve --config names them)", name, ErrUnknownPartner)
	}
	names := make([]string, 0, len(published))
	for n := range published {
		names = append(names, n)
	}
	slices.Sort(names)
	return fmt.Errorf("partner %q: %w; known: %s", name, ErrUnknownPartner, strings.Join(names, ", "))
}

// ApplyPartner resolves n's partner for enqueue from the summaries serve
// published: the one n names, else the longest URL prefix match. It sets
// n.Partner, and n.Schedule from the partner when keepSchedule is false.
// A named partner that serve did not publish is an error wrapping
// ErrUnknownPartner; one whose prefixes n's URL is not under, an error
// wrapping ErrInvalidNotice; a partner whose published schedule does not
// parse, an error wrapping ErrPublished.
func ApplyPartner(n *Notice, published map[string]PartnerSummary, keepSchedule bool) error {
	return applyPartner(n, published, publishedPrefixes(published), keepSchedule)
}

// publishedPrefixes indexes the prefixes of the partners serve published.
func publishedPrefixes(published map[string]PartnerSummary) *prefixIndex {
	prefixes := make(map[string][]string, len(published))
	for name, s := range published {
		prefixes[name] = s.URLPrefix
	}
	return newPrefixIndex(prefixes)
}

func applyPartner(n *Notice, published map[string]PartnerSummary, x *prefixIndex, keepSchedule bool) error {
	var s *PartnerSummary
	if n.Partner != "" {
		if err := KnownPartner(published, n.Partner); err != nil {
			return fmt.Errorf("notice %s: %w", n.ID, err)
		}
		ps := published[n.Partner]
		if !x.owns(n.Partner, n.URL) {
			return fmt.Errorf("%w: notice %s: url %s is not under a url_prefix of partner %q (%s)",
				ErrInvalidNotice, n.ID, RedactURL(n.URL), n.Partner, strings.Join(ps.URLPrefix, ", "))
		}
		s = &ps
	} else if name, ok := x.longest(n.URL); ok {
		ps := published[name]
		s = &ps
	}
	if s == nil {
		return nil
	}
	n.Partner = s.Name
	if !keepSchedule && s.Schedule != "" {
		sched, err := backoff.Parse(s.Schedule)
		if err != nil {
			return publishedError{fmt.Errorf("partner %s: published schedule: %w", s.Name, err)}
		}
		n.Schedule = sched
	}
	return nil
}
