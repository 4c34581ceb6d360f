package notifier_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/notifier/notifier/backoff"
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

// TestNamedPartnerMustOwnTheURL: a notice that names a partner must have a
// URL under one of its prefixes, or it would carry the partner's signatures
// to any host. A partner without prefixes takes any URL.
func TestNamedPartnerMustOwnTheURL(t *testing.T) {
	ps := notifier.NewPartners(matchPartners, 0)
	sums, err := ps.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	published, err := notifier.ParseSummaries(sums)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, partner, url string
		wantOK             bool
	}{
		{"UnderItsPrefix", "hooks", "https://hooks.example.com/cb/x", true},
		{"UnderAnotherPartnersPrefix", "hooks", "https://pay.example.com/x", false},
		{"LookalikeHost", "pay", "https://pay.example.com.evil.net/x", false},
		{"OtherPort", "pay", "https://pay.example.com:8443/x", false},
		{"OutsideItsPath", "hooks", "https://hooks.example.com/cbx", false},
		{"PartnerWithoutPrefixesTakesAnyURL", "named-only", "https://anywhere.example.net/x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantName := ""
			if tt.wantOK {
				wantName = tt.partner
			}
			got := ""
			if p := ps.Resolve(&notifier.Notice{URL: tt.url, Partner: tt.partner}); p != nil {
				got = p.Name
			}
			if got != wantName {
				t.Errorf("Resolve = %q, want %q: a named partner is applied only to its own URLs", got, wantName)
			}

			n := notifier.Notice{ID: "n1", URL: tt.url + "?token=SECRET", Partner: tt.partner}
			err := notifier.ApplyPartner(&n, published, true)
			if tt.wantOK {
				if err != nil {
					t.Errorf("ApplyPartner = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, notifier.ErrInvalidNotice) || !strings.Contains(err.Error(), "not under") {
				t.Errorf("ApplyPartner = %v, want an ErrInvalidNotice saying the URL is not under the partner's prefixes", err)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("ApplyPartner error %q shows the query string", err)
			}
		})
	}

	t.Run("IntakeRefusesItAlone", func(t *testing.T) {
		q := intakeStore(t, published)
		errs, err := notifier.Intake{Queue: q, Published: q}.Enqueue(context.Background(), []notifier.Notice{
			{ID: "ok", URL: "https://hooks.example.com/cb/1", Partner: "hooks"},
			{ID: "bad", URL: "https://evil.example.net/cb/1", Partner: "hooks"},
		})
		if err != nil || errs[0] != nil || !errors.Is(errs[1], notifier.ErrInvalidNotice) {
			t.Fatalf("Enqueue = %v, %v; want the second notice refused with ErrInvalidNotice", errs, err)
		}
		if len(q.enqueued) != 1 || q.enqueued[0].ID != "ok" {
			t.Errorf("stored %v, want only ok", q.enqueued)
		}
	})
}

// TestKnownPartnerIsOneRule: a partner serve did not publish is refused
// with the names it did publish, or the news that it published none, and
// Intake applies the rule also when serve published no partner.
func TestKnownPartnerIsOneRule(t *testing.T) {
	published := map[string]notifier.PartnerSummary{"shop": {Name: "shop"}, "bank": {Name: "bank"}}
	if err := notifier.KnownPartner(published, "shop"); err != nil {
		t.Errorf("KnownPartner(shop) = %v", err)
	}
	err := notifier.KnownPartner(published, "shpo")
	if !errors.Is(err, notifier.ErrUnknownPartner) || !strings.HasSuffix(err.Error(), "known: bank, shop") {
		t.Errorf("KnownPartner(shpo) = %v, want ErrUnknownPartner listing bank, shop", err)
	}
	err = notifier.KnownPartner(nil, "shop")
	if !errors.Is(err, notifier.ErrUnknownPartner) || !strings.Contains(err.Error(), "no serve has published any partner") {
		t.Errorf("KnownPartner with none published = %v", err)
	}
	q := intakeStore(t, nil)
	errs, err := notifier.Intake{Queue: q, Published: q}.Enqueue(context.Background(), []notifier.Notice{{ID: "x", URL: "https://a.example/", Partner: "nosuch"}})
	if err != nil || !errors.Is(errs[0], notifier.ErrUnknownPartner) {
		t.Errorf("Intake with no partners published = %v, %v; want ErrUnknownPartner", errs, err)
	}
	if len(q.enqueued) != 0 {
		t.Errorf("stored %v, want nothing", q.enqueued)
	}
}

// intakeStore is a fakeIntakeStore that publishes the summaries published.
func intakeStore(t *testing.T, published map[string]notifier.PartnerSummary) *fakeIntakeStore {
	t.Helper()
	f := &fakeIntakeStore{def: backoff.Default, partners: map[string]string{}}
	for name, sum := range published {
		b, err := json.Marshal(sum)
		if err != nil {
			t.Fatal(err)
		}
		f.partners[name] = string(b)
	}
	return f
}
