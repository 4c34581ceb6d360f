package notifier_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notifier/notifier/notifier"
)

// matchPartners are the partners of TestPartnerByURLPrefix.
var matchPartners = []*notifier.Partner{
	{Name: "pay", Prefixes: []string{"https://pay.example.com"}},
	{Name: "pay-8443", Prefixes: []string{"https://pay.example.com:8443/"}},
	{Name: "hooks", Prefixes: []string{"https://hooks.example.com/cb"}},
	{Name: "hooks-deep", Prefixes: []string{"https://hooks.example.com/cb/deep/"}},
	{Name: "plain", Prefixes: []string{"http://plain.example.com:80/"}},
	{Name: "named-only"},
}

// TestPartnerByURLPrefix: a URL is a partner's when its scheme, host and
// port are those of one of the partner's prefixes and its path is under the
// prefix's at a segment boundary; the longest such prefix wins. Serve
// (Resolve, at delivery) and enqueue (ApplyPartner, from what serve
// published) agree.
func TestPartnerByURLPrefix(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"HostOnlyPrefixTakesAnyPath", "https://pay.example.com/notify", "pay"},
		{"HostOnlyPrefixTakesTheRoot", "https://pay.example.com", "pay"},
		{"HostIsCaseInsensitive", "https://PAY.Example.COM/x", "pay"},
		{"SchemeIsCaseInsensitive", "HTTPS://pay.example.com/x", "pay"},
		{"DefaultPortIsThePort", "https://pay.example.com:443/x", "pay"},
		{"TrailingDotIsTheSameHost", "https://pay.example.com./x", "pay"},
		{"LongerHostIsNotThePartners", "https://pay.example.com.evil.net/x", ""},
		{"SubdomainIsNotThePartners", "https://evil.pay.example.com/x", ""},
		{"OtherPortIsNotThePartners", "https://pay.example.com:9443/x", ""},
		{"OtherPortHasItsOwnPartner", "https://pay.example.com:8443/x", "pay-8443"},
		{"OtherSchemeIsNotThePartners", "http://pay.example.com/x", ""},
		{"PrefixInThePathIsNotThePartners", "https://evil.net/https://pay.example.com/x", ""},
		{"PrefixInUserInfoIsNotThePartners", "https://pay.example.com@evil.net/x", ""},
		{"PathPrefixItself", "https://hooks.example.com/cb", "hooks"},
		{"PathPrefixWithQuery", "https://hooks.example.com/cb?order=1", "hooks"},
		{"UnderPathPrefix", "https://hooks.example.com/cb/x", "hooks"},
		{"PathPrefixIsWholeSegments", "https://hooks.example.com/cbx", ""},
		{"PathIsCaseSensitive", "https://hooks.example.com/CB/x", ""},
		{"DotSegmentsLeavingThePrefix", "https://hooks.example.com/cb/../admin", ""},
		{"EscapedDotSegmentsLeavingThePrefix", "https://hooks.example.com/cb/%2e%2e/admin", ""},
		{"LongestPrefixWins", "https://hooks.example.com/cb/deep/x", "hooks-deep"},
		{"SlashPrefixNeedsTheSlash", "https://hooks.example.com/cb/deep", "hooks"},
		{"ExplicitDefaultPortInPrefix", "http://plain.example.com/x", "plain"},
		{"OtherHostOfNoPartner", "https://other.example.com/", ""},
	}
	ps := notifier.NewPartners(matchPartners, 0)
	sums, err := ps.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	published, err := notifier.ParseSummaries(sums)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if p := ps.Resolve(&notifier.Notice{URL: tt.url}); p != nil {
				got = p.Name
			}
			if got != tt.want {
				t.Errorf("Resolve(%s) = %q, want %q", tt.url, got, tt.want)
			}
			n := notifier.Notice{ID: "n1", URL: tt.url}
			if err := notifier.ApplyPartner(&n, published, true); err != nil || n.Partner != tt.want {
				t.Errorf("ApplyPartner(%s) = %q, %v; want %q", tt.url, n.Partner, err, tt.want)
			}
		})
	}
}

// TestConfigRefusesPrefixWithQuery: a query string or fragment would take
// no part in matching, so a url_prefix with one is refused, not ignored.
func TestConfigRefusesPrefixWithQuery(t *testing.T) {
	for _, prefix := range []string{"https://pay.example.com/cb?key=1", "https://pay.example.com/cb?", "https://pay.example.com/cb#x"} {
		t.Run(prefix, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "notifier.toml")
			if err := os.WriteFile(path, []byte("[[partner]]\nname = \"pay\"\nurl_prefix = [\""+prefix+"\"]\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := notifier.LoadConfig(path)
			if !errors.Is(err, notifier.ErrConfig) || !strings.Contains(err.Error(), "url_prefix") {
				t.Errorf("LoadConfig = %v, want ErrConfig naming url_prefix", err)
			}
		})
	}
}
