package notifier

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// MinPortalTokenLen is the shortest portal token a partner may have: the
// API's bearer tokens have the same floor.
const MinPortalTokenLen = 16

// maxPortalTokensFile bounds a portal_tokens_file: a few hundred tokens.
const maxPortalTokensFile = 64 << 10

// portalTokens returns the partner's portal tokens: those of portal_tokens
// and those of portal_tokens_file (one a line; blank lines and lines
// starting with # are skipped), a relative file name read from dir. The
// errors never quote a token.
func (rp rawPartner) portalTokens(dir string) ([]string, error) {
	tokens := append([]string(nil), rp.PortalTokens...)
	for i, t := range tokens {
		if err := checkPortalToken(t); err != nil {
			return nil, fmt.Errorf("portal_tokens[%d]: %v", i, err)
		}
	}
	if rp.PortalTokensFile == "" {
		return tokens, nil
	}
	path := rp.PortalTokensFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("portal_tokens_file: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxPortalTokensFile)
	for ln := 1; sc.Scan(); ln++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if err := checkPortalToken(t); err != nil {
			return nil, fmt.Errorf("portal_tokens_file %s line %d: %v", path, ln, err)
		}
		tokens = append(tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("portal_tokens_file %s: %v", path, err)
	}
	return tokens, nil
}

// checkPortalToken says what is wrong with token t, without quoting it.
func checkPortalToken(t string) error {
	if len(t) < MinPortalTokenLen {
		return fmt.Errorf("a token of %d characters: want at least %d", len(t), MinPortalTokenLen)
	}
	for _, r := range t {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return errors.New("a token with spaces or control characters")
		}
	}
	return nil
}

// checkPortalTokens refuses a token given to two partners (or twice): a
// token names exactly one partner.
func checkPortalTokens(ps []*Partner) error {
	owner := map[string]string{}
	for _, p := range ps {
		for _, t := range p.PortalTokens {
			if other, ok := owner[t]; ok {
				return fmt.Errorf("partner %q: portal token %s is also a token of partner %q", p.Name, TokenFingerprint(t), other)
			}
			owner[t] = p.Name
		}
	}
	return nil
}

// TokenFingerprint names a token in logs without revealing it: the first
// 12 hex digits of its SHA-256, as `printf %s "$TOKEN" | sha256sum | cut
// -c1-12` prints them.
func TokenFingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// Caller is a partner that presented one of its portal tokens.
type Caller struct {
	// Partner is the partner's name.
	Partner string
	// Token is the token's fingerprint (TokenFingerprint), for logs.
	Token string
}

// portalToken is one accepted token, kept as its digest.
type portalToken struct {
	sum     [sha256.Size]byte
	partner string
	fp      string
	// key signs the console sessions this token opens, so removing the
	// token from the config ends them.
	key []byte
}

// PortalTokens checks presented portal tokens. The zero value accepts
// none.
type PortalTokens struct {
	tokens []portalToken
	byFP   map[string]int
}

// NewPortalTokens indexes the portal tokens of ps. It refuses a token
// equal to one of reserved (the operator's tokens): such a token would
// open two doors at once.
func NewPortalTokens(ps []*Partner, reserved ...string) (*PortalTokens, error) {
	if err := checkPortalTokens(ps); err != nil {
		return nil, err
	}
	pt := &PortalTokens{byFP: map[string]int{}}
	for _, p := range ps {
		for _, t := range p.PortalTokens {
			for _, r := range reserved {
				if r != "" && r == t {
					return nil, fmt.Errorf("partner %q: a portal token (%s) is also an operator token", p.Name, TokenFingerprint(t))
				}
			}
			fp := TokenFingerprint(t)
			if _, dup := pt.byFP[fp]; dup {
				return nil, fmt.Errorf("partner %q: two portal tokens share the fingerprint %s", p.Name, fp)
			}
			m := hmac.New(sha256.New, []byte(t))
			m.Write([]byte("notifier portal session key v1"))
			pt.byFP[fp] = len(pt.tokens)
			pt.tokens = append(pt.tokens, portalToken{sum: sha256.Sum256([]byte(t)), partner: p.Name, fp: fp, key: m.Sum(nil)})
		}
	}
	return pt, nil
}

// Len counts the accepted tokens.
func (pt *PortalTokens) Len() int {
	if pt == nil {
		return 0
	}
	return len(pt.tokens)
}

// Check returns the partner whose token was presented. It compares the
// digest of what was presented with every token's, in constant time and
// without stopping at a match, so neither the time taken nor an early
// exit says how close a guess was or which partner it belongs to.
func (pt *PortalTokens) Check(presented string) (Caller, bool) {
	if pt == nil {
		return Caller{}, false
	}
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range pt.tokens {
		if subtle.ConstantTimeCompare(sum[:], pt.tokens[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Caller{}, false
	}
	t := pt.tokens[found]
	return Caller{Partner: t.partner, Token: t.fp}, true
}

// SessionKey returns the key that signs sessions opened with the token of
// fingerprint fp, and its caller; false if no configured token has it.
func (pt *PortalTokens) SessionKey(fp string) ([]byte, Caller, bool) {
	if pt == nil {
		return nil, Caller{}, false
	}
	i, ok := pt.byFP[fp]
	if !ok {
		return nil, Caller{}, false
	}
	t := pt.tokens[i]
	return t.key, Caller{Partner: t.partner, Token: t.fp}, true
}
