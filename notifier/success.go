package notifier

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// ErrInvalidRule is wrapped by every error ParseSuccessRule and ExpectBody
// return.
var ErrInvalidRule = errors.New("invalid success rule")

// MaxRuleText bounds the TEXT of a body:TEXT rule: acknowledgements are
// short words, and the reply seen by Check is only MaxSnippet bytes.
const MaxRuleText = 256

// MaxRuleRegex bounds the EXPR of a regex:EXPR rule, which keeps compiling it
// cheap.
const MaxRuleRegex = 512

// whySnippet is how much of a reply a reason from Check quotes.
const whySnippet = 60

type ruleKind uint8

const (
	rule2xx ruleKind = iota // the zero value
	ruleStatus
	ruleBody
	ruleWeChat
	ruleRegex
)

// SuccessRule decides whether a partner's reply means the notice was
// delivered. Many payment partners answer 200 to a notice they have not
// taken and expect a word in the body instead (Alipay prints "success",
// WeChat Pay v2 returns XML with return_code SUCCESS), so the status alone is
// not always enough.
//
// The zero value is the default rule, any 2xx status. Rules are comparable:
// ParseSuccessRule(r.String()) == r.
type SuccessRule struct {
	kind  ruleKind
	arg   string     // body TEXT or regex EXPR
	codes [10]uint64 // status: bit c is set for accepted status c (100 to 599)
}

// ParseSuccessRule reads a rule in one of these forms:
//
//	2xx              any status 200 to 299 (the zero value)
//	status:200,204   one of the listed statuses, each 100 to 599 ("200,204" alone also works)
//	body:TEXT        a 2xx status and a body, trimmed of ASCII space, equal to TEXT (Alipay: body:success)
//	wechat           a 2xx status and an XML body whose root's return_code is SUCCESS (WeChat Pay v2)
//	regex:EXPR       a 2xx status and a body the Go regular expression EXPR matches
//
// Kind names are case-insensitive; TEXT and EXPR are not. Errors wrap
// ErrInvalidRule.
func ParseSuccessRule(s string) (SuccessRule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return SuccessRule{}, fmt.Errorf("%w: empty", ErrInvalidRule)
	}
	kind, arg, hasArg := strings.Cut(s, ":")
	switch k := strings.ToLower(kind); {
	case k == "2xx" && !hasArg:
		return SuccessRule{}, nil
	case k == "wechat" && !hasArg:
		return SuccessRule{kind: ruleWeChat}, nil
	case k == "status" && hasArg:
		return parseStatusRule(arg)
	case !hasArg && isStatusList(s):
		return parseStatusRule(s)
	case k == "body" && hasArg:
		return ExpectBody(arg)
	case k == "regex" && hasArg:
		return parseRegexRule(arg)
	case k == "2xx" || k == "wechat":
		return SuccessRule{}, fmt.Errorf("%w: %s takes no argument", ErrInvalidRule, k)
	case k == "status" || k == "body" || k == "regex":
		return SuccessRule{}, fmt.Errorf("%w: %s needs an argument (%s:...)", ErrInvalidRule, k, k)
	}
	return SuccessRule{}, fmt.Errorf("%w: unknown kind %s (want 2xx, status:CODES, body:TEXT, wechat or regex:EXPR)",
		ErrInvalidRule, quoteSnippet(kind))
}

// ExpectBody is the rule body:TEXT, for the --expect-body flag: a 2xx status
// and a body that, trimmed of ASCII space, is exactly text. text is trimmed
// the same way, must not be empty and is at most MaxRuleText bytes. Errors
// wrap ErrInvalidRule.
func ExpectBody(text string) (SuccessRule, error) {
	text = trimASCIISpace(text)
	switch {
	case text == "":
		return SuccessRule{}, fmt.Errorf("%w: body: empty text", ErrInvalidRule)
	case len(text) > MaxRuleText:
		return SuccessRule{}, fmt.Errorf("%w: body: text is %d bytes, at most %d", ErrInvalidRule, len(text), MaxRuleText)
	}
	return SuccessRule{kind: ruleBody, arg: text}, nil
}

// isStatusList reports whether s looks like a bare status list ("200,204"),
// so a typo such as "20O" is reported as an unknown kind, not a bad status.
func isStatusList(s string) bool {
	return strings.Trim(s, "0123456789, ") == "" && strings.ContainsAny(s, "0123456789")
}

func parseStatusRule(list string) (SuccessRule, error) {
	r := SuccessRule{kind: ruleStatus}
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		c, err := strconv.Atoi(item)
		if err != nil || c < 100 || c > 599 {
			return SuccessRule{}, fmt.Errorf("%w: status item %d %s: want a code from 100 to 599",
				ErrInvalidRule, i+1, quoteSnippet(item))
		}
		r.codes[c/64] |= 1 << (c % 64)
	}
	return r, nil
}

func parseRegexRule(expr string) (SuccessRule, error) {
	switch {
	case expr == "":
		return SuccessRule{}, fmt.Errorf("%w: regex: empty expression", ErrInvalidRule)
	case len(expr) > MaxRuleRegex:
		return SuccessRule{}, fmt.Errorf("%w: regex: expression is %d bytes, at most %d", ErrInvalidRule, len(expr), MaxRuleRegex)
	}
	if _, err := compileRule(expr); err != nil {
		return SuccessRule{}, fmt.Errorf("%w: regex: %w", ErrInvalidRule, err)
	}
	return SuccessRule{kind: ruleRegex, arg: expr}, nil
}

// IsZero reports whether r is the default rule, any 2xx status, so callers
// can leave it out of stored notices and flag defaults.
func (r SuccessRule) IsZero() bool { return r == SuccessRule{} }

// String returns r in the canonical form ParseSuccessRule reads back to r:
// "2xx", "status:200,204" (sorted, no repeats), "body:TEXT", "wechat" or
// "regex:EXPR".
func (r SuccessRule) String() string {
	switch r.kind {
	case ruleStatus:
		return "status:" + strings.Join(r.statusList(), ",")
	case ruleBody:
		return "body:" + r.arg
	case ruleWeChat:
		return "wechat"
	case ruleRegex:
		return "regex:" + r.arg
	}
	return "2xx"
}

func (r SuccessRule) statusList() []string {
	var codes []string
	for c := 100; c <= 599; c++ {
		if r.hasStatus(c) {
			codes = append(codes, strconv.Itoa(c))
		}
	}
	return codes
}

func (r SuccessRule) hasStatus(c int) bool {
	return c >= 0 && c/64 < len(r.codes) && r.codes[c/64]&(1<<(c%64)) != 0
}

// Check reports whether a reply with this status and body means delivered.
// body is the start of the reply (MaxSnippet bytes are enough). When ok is
// false, why says in a few words what was wrong, quoting at most 60 bytes of
// the body, for the attempt log.
func (r SuccessRule) Check(status int, body []byte) (ok bool, why string) {
	if r.kind == ruleStatus {
		if r.hasStatus(status) {
			return true, ""
		}
		codes := r.statusList()
		if len(codes) <= 4 {
			return false, fmt.Sprintf("status %d is not %s", status, strings.Join(codes, " or "))
		}
		return false, fmt.Sprintf("status %d is not one of the %d accepted", status, len(codes))
	}
	if !Succeeded(status) {
		return false, fmt.Sprintf("status %d is not 2xx", status)
	}
	switch r.kind {
	case ruleBody:
		if got := trimASCIISpace(body); got != r.arg {
			return false, fmt.Sprintf("body %s is not %s", quoteSnippet(got), quoteSnippet(r.arg))
		}
	case ruleWeChat:
		return checkWeChat(body)
	case ruleRegex:
		re, err := compileRule(r.arg)
		if err != nil { // only a rule not made by ParseSuccessRule
			return false, "the rule's regex does not compile"
		}
		if !re.Match(body) {
			return false, fmt.Sprintf("body %s does not match the regex", quoteSnippet(body))
		}
	}
	return true, ""
}

// checkWeChat accepts an XML body whose root element has a return_code child
// with the text SUCCESS, as WeChat Pay v2 expects of a merchant's reply. The
// body is read as a stream up to that element, so a reply cut at MaxSnippet
// still counts if return_code came first.
func checkWeChat(body []byte) (bool, string) {
	d := xml.NewDecoder(bytes.NewReader(body))
	// Only the ASCII return_code and SUCCESS matter, so a declared GBK or
	// Latin-1 encoding is read as is rather than rejected.
	d.CharsetReader = func(_ string, in io.Reader) (io.Reader, error) { return in, nil }
	notXML := func() (bool, string) {
		return false, fmt.Sprintf("body %s is not XML", quoteSnippet(trimASCIISpace(body)))
	}
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if depth == 0 {
				return notXML()
			}
			return false, "body has no return_code in its root element"
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == "return_code" {
				code, err := elementText(d)
				if err != nil {
					return notXML()
				}
				if code != "SUCCESS" {
					return false, fmt.Sprintf("return_code %s is not \"SUCCESS\"", quoteSnippet(code))
				}
				return true, ""
			}
		case xml.EndElement:
			depth--
			if depth == 0 {
				return false, "body has no return_code in its root element"
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return notXML() // text before the root element
			}
		}
	}
}

// elementText returns the text of the element whose start d has just read
// (CDATA included, child elements skipped), trimmed of ASCII space.
func elementText(d *xml.Decoder) (string, error) {
	var b strings.Builder
	for depth := 1; ; {
		tok, err := d.Token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth--; depth == 0 {
				return trimASCIISpace(b.String()), nil
			}
		case xml.CharData:
			if depth == 1 && b.Len() < MaxSnippet {
				b.Write(t)
			}
		}
	}
}

// trimASCIISpace trims spaces, tabs, CR and LF (and VT, FF) but not Unicode
// spaces, which a partner's acknowledgement never ends with by accident.
func trimASCIISpace[T string | []byte](s T) string {
	return strings.Trim(string(s), " \t\r\n\v\f")
}

// quoteSnippet quotes the first whySnippet bytes of b with Go escapes, so a
// reason in the attempt log is one printable line whatever the partner sent,
// and marks a cut with "…" after the closing quote.
func quoteSnippet[T string | []byte](b T) string {
	if len(b) <= whySnippet {
		return strconv.Quote(string(b))
	}
	cut := whySnippet
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut-- // do not split a character
	}
	return strconv.Quote(string(b[:cut])) + "…"
}

// ruleRegexps caches compiled regex rules: a rule is parsed per notice but
// checked on every attempt, and SuccessRule keeps only the expression so that
// rules stay comparable. The cache is emptied when full, which bounds it even
// if every notice brings its own expression.
var ruleRegexps struct {
	sync.Mutex
	m map[string]*regexp.Regexp
}

const maxCachedRegexps = 64

func compileRule(expr string) (*regexp.Regexp, error) {
	ruleRegexps.Lock()
	re, ok := ruleRegexps.m[expr]
	ruleRegexps.Unlock()
	if ok {
		return re, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	ruleRegexps.Lock()
	defer ruleRegexps.Unlock()
	if ruleRegexps.m == nil || len(ruleRegexps.m) >= maxCachedRegexps {
		ruleRegexps.m = make(map[string]*regexp.Regexp, maxCachedRegexps)
	}
	ruleRegexps.m[expr] = re
	return re, nil
}
