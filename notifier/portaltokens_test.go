package notifier_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notifier/notifier/notifier"
)

func loadConfig(t *testing.T, files map[string]string) (*notifier.Config, error) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return notifier.LoadConfig(filepath.Join(dir, "notifier.toml"))
}

func TestPortalTokensInTheConfig(t *testing.T) {
	const (
		a = "token-a-0123456789abcdef"
		b = "token-b-0123456789abcdef"
		c = "token-c-0123456789abcdef"
	)

	t.Run("FromTheConfigAndAFileRelativeToIt", func(t *testing.T) {
		cfg, err := loadConfig(t, map[string]string{
			"notifier.toml": "[[partner]]\nname = \"shop\"\nportal_tokens = [\"" + a + "\"]\nportal_tokens_file = \"shop.tokens\"\n",
			"shop.tokens":   "# rotation: both valid until Friday\n" + b + "\n\n  " + c + "  \n",
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(cfg.Partners[0].PortalTokens, ","); got != a+","+b+","+c {
			t.Errorf("tokens %q, want a, b, c", got)
		}
		pt, err := notifier.NewPortalTokens(cfg.Partners)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{a, b, c} {
			if caller, ok := pt.Check(tok); !ok || caller.Partner != "shop" || caller.Token != notifier.TokenFingerprint(tok) {
				t.Errorf("Check(%s) = %+v %v, want shop with its fingerprint", tok[:7], caller, ok)
			}
		}
		for _, tok := range []string{"", a + " ", a[:16], strings.ToUpper(a), "x"} {
			if caller, ok := pt.Check(tok); ok {
				t.Errorf("Check(%q) = %+v, want refused", tok, caller)
			}
		}
	})

	t.Run("BadTokensAreRefusedWithoutQuotingThem", func(t *testing.T) {
		for name, files := range map[string]map[string]string{
			"Short":        {"notifier.toml": "[[partner]]\nname = \"shop\"\nportal_tokens = [\"short-secret-1\"]\n"},
			"Spaces":       {"notifier.toml": "[[partner]]\nname = \"shop\"\nportal_tokens = [\"has a space in it 0123\"]\n"},
			"ShortInAFile": {"notifier.toml": "[[partner]]\nname = \"shop\"\nportal_tokens_file = \"t\"\n", "t": "short-secret-1\n"},
			"MissingFile":  {"notifier.toml": "[[partner]]\nname = \"shop\"\nportal_tokens_file = \"nope\"\n"},
			"TwoPartners": {"notifier.toml": "[[partner]]\nname = \"shop\"\nportal_tokens = [\"" + a + "\"]\n" +
				"[[partner]]\nname = \"bank\"\nportal_tokens = [\"" + a + "\"]\n"},
		} {
			_, err := loadConfig(t, files)
			if !errors.Is(err, notifier.ErrConfig) {
				t.Errorf("%s: %v, want a config error", name, err)
				continue
			}
			if strings.Contains(err.Error(), "short-secret") || strings.Contains(err.Error(), "has a space") || strings.Contains(err.Error(), a) {
				t.Errorf("%s: error %q quotes the token", name, err)
			}
		}
	})

	t.Run("AnOperatorTokenIsNoPartnerToken", func(t *testing.T) {
		ps := []*notifier.Partner{{Name: "shop", PortalTokens: []string{a}}}
		if _, err := notifier.NewPortalTokens(ps, "operator-token-0123456789", a); err == nil || strings.Contains(err.Error(), a) {
			t.Errorf("a portal token equal to an operator token: %v, want an error that does not quote it", err)
		}
	})
}
