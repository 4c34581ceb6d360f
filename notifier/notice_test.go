package notifier

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
)

// validNotice returns a notice that passes Validate; cases change one thing.
func validNotice() Notice {
	return Notice{
		ID:       "n_order-42",
		URL:      "https://partner.example/hooks?token=abc",
		Body:     []byte(`{"event":"paid"}`),
		Header:   http.Header{"Authorization": {"Bearer k"}, "X-Tag": {"a", "b"}},
		Schedule: backoff.Schedule{0, 200 * time.Millisecond, 400 * time.Millisecond},
		Stamp:    time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
}

// manyHeaders returns n distinct harmless headers.
func manyHeaders(n int) http.Header {
	h := make(http.Header, n)
	for i := range n {
		h.Set("X-H"+strconv.Itoa(i), "v")
	}
	return h
}

func TestNoticeValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(n *Notice)
		wantErr bool
	}{
		{"ValidNotice", func(*Notice) {}, false},
		{"ValidWithoutBodyOrHeaders", func(n *Notice) { n.Body, n.Header = nil, nil }, false},
		{"IDWithUnderscoresAndPunctuation", func(n *Notice) { n.ID = "order_42:v2/x" }, false},
		{"IDOfDots", func(n *Notice) { n.ID = "..." }, false},
		{"IDStartingWithDot", func(n *Notice) { n.ID = ".a" }, false},
		{"IDOfMaxLen", func(n *Notice) { n.ID = strings.Repeat("a", MaxIDLen) }, false},
		{"PlainHTTPURL", func(n *Notice) { n.URL = "http://10.0.0.1:8080/h" }, false},
		{"BodyOfMaxBodyBytes", func(n *Notice) { n.Body = make([]byte, MaxBodyBytes) }, false},
		{"MaxHeaders", func(n *Notice) { n.Header = manyHeaders(MaxHeaders) }, false},
		{"ScheduleOfMaxAttempts", func(n *Notice) { n.Schedule = make(backoff.Schedule, backoff.MaxAttempts) }, false},

		{"IDEmpty", func(n *Notice) { n.ID = "" }, true},
		{"IDTooLong", func(n *Notice) { n.ID = strings.Repeat("a", MaxIDLen+1) }, true},
		{"IDWithSpace", func(n *Notice) { n.ID = "order 42" }, true},
		{"IDWithTab", func(n *Notice) { n.ID = "order\t42" }, true},
		{"IDWithDEL", func(n *Notice) { n.ID = "order\x7f" }, true},
		{"IDDot", func(n *Notice) { n.ID = "." }, true},     // a path segment the API and console cannot name
		{"IDDotDot", func(n *Notice) { n.ID = ".." }, true}, // likewise
		{"IDNonASCII", func(n *Notice) { n.ID = "commande-é" }, true},
		{"URLEmpty", func(n *Notice) { n.URL = "" }, true},
		{"URLFTP", func(n *Notice) { n.URL = "ftp://partner.example/hooks" }, true},
		{"URLRelative", func(n *Notice) { n.URL = "/hooks" }, true},
		{"URLWithoutHost", func(n *Notice) { n.URL = "https:///hooks" }, true},
		{"URLWithUserInfo", func(n *Notice) { n.URL = "https://user:pass@partner.example/hooks" }, true},
		{"URLUnparsable", func(n *Notice) { n.URL = "https://partner example/hooks" }, true},
		{"URLTooLong", func(n *Notice) { n.URL = "https://partner.example/" + strings.Repeat("a", MaxURLLen) }, true},
		{"BodyOverMaxBodyBytes", func(n *Notice) { n.Body = make([]byte, MaxBodyBytes+1) }, true},
		{"TooManyHeaders", func(n *Notice) { n.Header = manyHeaders(MaxHeaders + 1) }, true},
		{"HeadersTooLarge", func(n *Notice) { n.Header = http.Header{"X-Big": {strings.Repeat("v", MaxHeaderBytes)}} }, true},
		{"HeadersAtLimit", func(n *Notice) { n.Header = http.Header{"X-Big": {strings.Repeat("v", MaxHeaderBytes-len("X-Big"))}} }, false},
		{"ReservedHeaderWebhookID", func(n *Notice) { n.Header.Set("Webhook-Id", "other") }, true},
		{"ReservedHeaderLowerCase", func(n *Notice) { n.Header["notice-attempt"] = []string{"9"} }, true},
		{"ReservedHeaderHost", func(n *Notice) { n.Header.Set("Host", "evil.example") }, true},
		{"HeaderNameEmpty", func(n *Notice) { n.Header[""] = []string{"v"} }, true},
		{"HeaderNameWithSpace", func(n *Notice) { n.Header["X Bad"] = []string{"v"} }, true},
		{"HeaderValueWithCRLF", func(n *Notice) { n.Header.Set("X-Tag", "a\r\nX-Injected: 1") }, true},
		{"HeaderValueWithLF", func(n *Notice) { n.Header.Set("X-Tag", "a\nb") }, true},
		{"HeaderValueWithNUL", func(n *Notice) { n.Header.Set("X-Tag", "a\x00b") }, true},
		{"HeaderSecondValueWithCRLF", func(n *Notice) { n.Header["X-Tag"] = []string{"ok", "a\r\nb"} }, true},
		// The rules net/http applies when it sends: anything else validated
		// and then failed every attempt.
		{"HeaderValueWithSOH", func(n *Notice) { n.Header.Set("X-A", "a\x01b") }, true},
		{"HeaderValueWithDEL", func(n *Notice) { n.Header.Set("X-A", "a\u007fb") }, true},
		{"HeaderValueWithESC", func(n *Notice) { n.Header.Set("X-A", "a\x1bb") }, true},
		{"HeaderValueWithTab", func(n *Notice) { n.Header.Set("X-A", "a\tb") }, false},
		{"HeaderValueNonASCII", func(n *Notice) { n.Header.Set("X-A", "café") }, false},
		{"HeaderValueEmpty", func(n *Notice) { n.Header.Set("X-A", "") }, false},
		{"HeaderNameWithColon", func(n *Notice) { n.Header["X:A"] = []string{"v"} }, true},
		{"HeaderNameNonASCII", func(n *Notice) { n.Header["X-É"] = []string{"v"} }, true},
		{"ReservedHeaderUpgrade", func(n *Notice) { n.Header.Set("Upgrade", "websocket") }, true}, // HTTP/2 refuses to send it
		// Every value is a header line: the limits count them all.
		{"MaxHeaderValues", func(n *Notice) { n.Header = http.Header{"X-Many": make([]string, MaxHeaders)} }, false},
		{"TooManyValuesOfOneHeader", func(n *Notice) { n.Header = http.Header{"X-Many": make([]string, MaxHeaders+1)} }, true},
		{"HugeValueCountOfOneHeader", func(n *Notice) { n.Header = http.Header{"X-Many": make([]string, 600_000)} }, true},
		{"TooManyValuesOverNames", func(n *Notice) {
			n.Header = manyHeaders(MaxHeaders - 1)
			n.Header["X-H0"] = append(n.Header["X-H0"], "v2", "v3")
		}, true},
		{"ValuesTooLargeWithRepeatedName", func(n *Notice) {
			// Each line repeats the name: 40 lines of name+value over 16 KiB.
			name := strings.Repeat("N", 300)
			n.Header = http.Header{name: make([]string, 40)}
			for i := range n.Header[name] {
				n.Header[name][i] = strings.Repeat("v", 120)
			}
		}, true},
		{"ScheduleEmpty", func(n *Notice) { n.Schedule = nil }, true},
		{"ScheduleOverMaxAttempts", func(n *Notice) { n.Schedule = make(backoff.Schedule, backoff.MaxAttempts+1) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validNotice()
			tt.change(&n)
			err := n.Validate()
			switch {
			case !tt.wantErr && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr && !errors.Is(err, ErrInvalidNotice):
				t.Errorf("Validate() = %v, want an error wrapping ErrInvalidNotice", err)
			}
		})
	}
}

// TestValidateStoredKeepsDotIDs: ids "." and ".." are refused at enqueue
// since they were found unreachable, but a notice stored before that is
// still read back and delivered.
func TestValidateStoredKeepsDotIDs(t *testing.T) {
	for _, id := range []string{".", ".."} {
		t.Run(id, func(t *testing.T) {
			n := validNotice()
			n.ID = id
			if err := ValidateID(id); !errors.Is(err, ErrInvalidNotice) {
				t.Errorf("ValidateID(%q) = %v, want ErrInvalidNotice", id, err)
			}
			if err := ValidateStoredID(id); err != nil {
				t.Errorf("ValidateStoredID(%q) = %v, want nil", id, err)
			}
			if err := n.ValidateStored(); err != nil {
				t.Errorf("ValidateStored() = %v, want nil", err)
			}
		})
	}
}

func TestValidateErrorsHideURLSecrets(t *testing.T) {
	tests := []struct {
		name string
		url  string
	}{
		{"UserInfo", "https://user:SECRET@partner.example/hooks"},
		{"QueryOfBadScheme", "ftp://partner.example/hooks?token=SECRET"},
		{"QueryOfUnparsable", "https://partner example/hooks?token=SECRET"},
		{"QueryWithoutHost", "https:///hooks?token=SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateURL(tt.url)
			if err == nil {
				t.Fatalf("ValidateURL(%q) = nil, want an error", tt.url)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("ValidateURL error %q shows the secret", err)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"QueryIsReplaced", "https://p.example/h?token=abc&x=1", "https://p.example/h?redacted"},
		{"EmptyQueryIsReplaced", "https://p.example/h?", "https://p.example/h?redacted"},
		{"UserInfoIsRemoved", "https://user:pass@p.example/h", "https://p.example/h"},
		{"FragmentIsRemoved", "https://p.example/h#sig=abc", "https://p.example/h"},
		{"AllThreeAreRemoved", "https://u:p@p.example:8443/a/b?k=v#f", "https://p.example:8443/a/b?redacted"},
		{"URLWithoutQueryIsUnchanged", "https://p.example:8443/a/b", "https://p.example:8443/a/b"},
		{"HostOnlyIsUnchanged", "http://p.example", "http://p.example"},
		{"UnparsableLosesItsQuery", "https://p example/h?token=abc", "https://p example/h"},
		{"UnparsableWithUserInfoIsHidden", "https://u:p@p example/h", "<unparsable url>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactURL(tt.in); got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseOutcome(t *testing.T) {
	tests := []struct {
		in      string
		want    Outcome
		wantErr bool
	}{
		{"delivered", Delivered, false},
		{"retry", Retry, false},
		{"gave-up", GaveUp, false},
		{"error", Error, false},
		{"Delivered", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseOutcome(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseOutcome(%q) = %q, %v, want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
