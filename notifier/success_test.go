package notifier_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/notifier/notifier/notifier"
)

// mustRule parses a rule the test table knows is valid.
func mustRule(t *testing.T, s string) notifier.SuccessRule {
	t.Helper()
	r, err := notifier.ParseSuccessRule(s)
	if err != nil {
		t.Fatalf("ParseSuccessRule(%q): %v", s, err)
	}
	return r
}

func TestSuccessRuleCheck(t *testing.T) {
	const (
		wechatOK   = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`
		wechatFail = `<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[bad sign]]></return_msg></xml>`
	)
	tests := []struct {
		name    string
		rule    string // "" is the zero SuccessRule
		status  int
		body    string
		wantOK  bool
		wantWhy string // substring of why when !ok
	}{
		{"ZeroIs2xx", "", 204, "", true, ""},
		{"ZeroRejects500", "", 500, "", false, "status 500 is not 2xx"},
		{"ZeroRejects3xx", "", 302, "", false, "status 302 is not 2xx"},
		{"2xxIgnoresBody", "2xx", 200, "fail", true, ""},
		{"2xxTop", "2xx", 299, "", true, ""},
		{"2xxRejects199", "2xx", 199, "", false, "not 2xx"},
		{"StatusInSet", "status:200,204", 204, "", true, ""},
		{"StatusNotInSet", "status:200,204", 201, "", false, "status 201 is not 200 or 204"},
		{"StatusMayBeNon2xx", "status:202,409", 409, "", true, ""},
		{"StatusManyCodes", "status:200,201,202,203,204", 500, "", false, "status 500 is not one of the 5 accepted"},
		{"BareStatusList", "200", 200, "", true, ""},
		{"BareStatusListRejects", "200", 204, "", false, "status 204 is not 200"},
		{"AlipaySuccess", "body:success", 200, "success", true, ""},
		{"AlipaySuccessNewline", "body:success", 200, "success\n", true, ""},
		{"AlipaySuccessPadded", "body:success", 200, " \r\n\tsuccess\r\n", true, ""},
		{"AlipayFail", "body:success", 200, "fail", false, `body "fail" is not "success"`},
		{"AlipayCase", "body:success", 200, "SUCCESS", false, `body "SUCCESS" is not "success"`},
		{"AlipayEmpty", "body:success", 200, "", false, `body "" is not "success"`},
		{"AlipayPrefix", "body:success", 200, "success!", false, `body "success!" is not "success"`},
		{"AlipayStatus500", "body:success", 500, "success", false, "status 500 is not 2xx"},
		{"BodyWhyIsPrintable", "body:ok", 200, "bad\x00\x1b[31mred", false, `body "bad\x00\x1b[31mred" is not "ok"`},
		{"BodyWhyIsCut", "body:ok", 200, strings.Repeat("x", 100), false, `body "` + strings.Repeat("x", 60) + `"… is not "ok"`},
		{"BodyWhyCutsOnRune", "body:ok", 200, strings.Repeat("x", 59) + "é", false, `body "` + strings.Repeat("x", 59) + `"…`},
		{"WeChatSuccess", "wechat", 200, wechatOK, true, ""},
		{"WeChatPlainText", "wechat", 200, "<xml><return_code> SUCCESS </return_code></xml>", true, ""},
		{"WeChatDeclaration", "wechat", 200, `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + wechatOK, true, ""},
		{"WeChatGBK", "wechat", 200, `<?xml version="1.0" encoding="GBK"?>` + wechatOK, true, ""},
		{"WeChatCutAfterCode", "wechat", 200, `<xml><return_code>SUCCESS</return_code><return_msg>` + strings.Repeat("x", 5000)[:4000], true, ""},
		{"WeChatAnyRootName", "wechat", 200, `<reply><return_code>SUCCESS</return_code></reply>`, true, ""},
		{"WeChatFail", "wechat", 200, wechatFail, false, `return_code "FAIL" is not "SUCCESS"`},
		{"WeChatLowerCase", "wechat", 200, `<xml><return_code>success</return_code></xml>`, false, `return_code "success" is not "SUCCESS"`},
		{"WeChatNoCode", "wechat", 200, `<xml><return_msg>OK</return_msg></xml>`, false, "no return_code"},
		{"WeChatCodeNotChildOfRoot", "wechat", 200, `<xml><a><return_code>SUCCESS</return_code></a></xml>`, false, "no return_code"},
		{"WeChatCodeIsRoot", "wechat", 200, `<return_code>SUCCESS</return_code>`, false, "no return_code"},
		{"WeChatNotXML", "wechat", 200, "SUCCESS", false, `body "SUCCESS" is not XML`},
		{"WeChatJSON", "wechat", 200, `{"return_code":"SUCCESS"}`, false, "is not XML"},
		{"WeChatEmpty", "wechat", 200, "", false, `body "" is not XML`},
		{"WeChatBroken", "wechat", 200, `<xml><return_code>SUCCESS</oops></xml>`, false, "is not XML"},
		{"WeChatCut", "wechat", 200, `<xml><return_co`, false, ""},
		{"WeChatGarbage", "wechat", 200, "\x00\xff<<<&&&]]>", false, "is not XML"},
		{"WeChatStatus500", "wechat", 500, wechatOK, false, "status 500 is not 2xx"},
		{"RegexMatch", `regex:^\s*(?i)ok\s*$`, 200, "OK\n", true, ""},
		{"RegexJSON", `regex:"status"\s*:\s*"ok"`, 201, `{"status": "ok"}`, true, ""},
		{"RegexNoMatch", "regex:^ok$", 200, "nope", false, `body "nope" does not match the regex`},
		{"RegexStatus500", "regex:ok", 500, "ok", false, "status 500 is not 2xx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r notifier.SuccessRule
			if tt.rule != "" {
				r = mustRule(t, tt.rule)
			}
			ok, why := r.Check(tt.status, []byte(tt.body))
			if ok != tt.wantOK {
				t.Fatalf("%v.Check(%d, %q) = %v, %q; want ok %v", r, tt.status, tt.body, ok, why, tt.wantOK)
			}
			switch {
			case ok && why != "":
				t.Errorf("%v.Check(%d, %q) succeeded with a reason %q", r, tt.status, tt.body, why)
			case !ok && why == "":
				t.Errorf("%v.Check(%d, %q) failed with no reason", r, tt.status, tt.body)
			case !ok && !strings.Contains(why, tt.wantWhy):
				t.Errorf("%v.Check(%d, %q) why = %q, want it to contain %q", r, tt.status, tt.body, why, tt.wantWhy)
			}
		})
	}
}

func TestSuccessRuleParse(t *testing.T) {
	tests := []struct {
		in, want string
		zero     bool
	}{
		{"2xx", "2xx", true},
		{" 2XX ", "2xx", true},
		{"status:200,204", "status:200,204", false},
		{"Status: 204 , 200,200", "status:200,204", false},
		{"200,204", "status:200,204", false},
		{"503", "status:503", false},
		{"status:100,599", "status:100,599", false},
		{"body:success", "body:success", false},
		{"BODY:success", "body:success", false},
		{"body: success \n", "body:success", false},
		{"body:a:b c", "body:a:b c", false},
		{"body:" + strings.Repeat("x", 256), "body:" + strings.Repeat("x", 256), false},
		{"wechat", "wechat", false},
		{"WeChat", "wechat", false},
		{"regex:^ok$", "regex:^ok$", false},
		{"regex: a:b", "regex: a:b", false},
		{"Regex:(?i)OK", "regex:(?i)OK", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r := mustRule(t, tt.in)
			if got := r.String(); got != tt.want {
				t.Fatalf("ParseSuccessRule(%q).String() = %q, want %q", tt.in, got, tt.want)
			}
			if r.IsZero() != tt.zero {
				t.Fatalf("ParseSuccessRule(%q).IsZero() = %v, want %v", tt.in, r.IsZero(), tt.zero)
			}
			if again := mustRule(t, r.String()); again != r {
				t.Fatalf("ParseSuccessRule(%q) = %v, want it equal to %v", r.String(), again, r)
			}
		})
	}
	if z := (notifier.SuccessRule{}); !z.IsZero() || z.String() != "2xx" {
		t.Errorf("zero SuccessRule: IsZero %v, String %q; want true, 2xx", z.IsZero(), z.String())
	}
}

func TestSuccessRuleParseRejects(t *testing.T) {
	tests := []struct {
		in, wantMsg string
	}{
		{"", "empty"},
		{"  ", "empty"},
		{"status:99", "status item 1"},
		{"status:600", "status item 1"},
		{"status:200,", "status item 2"},
		{"status:2xx", "status item 1"},
		{"status:", "status item 1"},
		{"status", "needs an argument"},
		{"200,,204", "status item 2"},
		{"99", "status item 1"},
		{"99999999999999999999", "status item 1"},
		{"body:", "empty text"},
		{"body: \t\n", "empty text"},
		{"body", "needs an argument"},
		{"body:" + strings.Repeat("x", 257), "at most 256"},
		{"regex:(", "regex"},
		{"regex:", "empty expression"},
		{"regex:" + strings.Repeat("a", 513), "at most 512"},
		{"regex:(?<", "regex"},
		{"wechat:v3", "takes no argument"},
		{"2xx:200", "takes no argument"},
		{"json:ok", `unknown kind "json"`},
		{"success", `unknown kind "success"`},
		{"20O", `unknown kind "20O"`},
		{"\x00\xff", `unknown kind "\x00\xff"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := notifier.ParseSuccessRule(tt.in)
			if !errors.Is(err, notifier.ErrInvalidRule) {
				t.Fatalf("ParseSuccessRule(%q) = %v, %v; want an error wrapping ErrInvalidRule", tt.in, r, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("ParseSuccessRule(%q) error %q, want it to mention %q", tt.in, err, tt.wantMsg)
			}
		})
	}
}

func TestSuccessRuleExpectBody(t *testing.T) {
	tests := []struct {
		text, want string
		wantErr    bool
	}{
		{"success", "body:success", false},
		{" success\n", "body:success", false},
		{"SUCCESS", "body:SUCCESS", false},
		{"", "", true},
		{"\r\n", "", true},
		{strings.Repeat("x", 257), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			r, err := notifier.ExpectBody(tt.text)
			if tt.wantErr {
				if !errors.Is(err, notifier.ErrInvalidRule) {
					t.Fatalf("ExpectBody(%q) = %v, %v; want an error wrapping ErrInvalidRule", tt.text, r, err)
				}
				return
			}
			if err != nil || r.String() != tt.want {
				t.Fatalf("ExpectBody(%q) = %v, %v; want %s", tt.text, r, err, tt.want)
			}
			if r != mustRule(t, tt.want) {
				t.Fatalf("ExpectBody(%q) != ParseSuccessRule(%q)", tt.text, tt.want)
			}
		})
	}
}

// FuzzSuccessRule checks that no rule text or reply makes Parse or Check
// panic, and that String round-trips.
func FuzzSuccessRule(f *testing.F) {
	for _, s := range []string{"2xx", "status:200,204", "body:success", "wechat", "regex:^ok$", "regex:("} {
		f.Add(s, 200, []byte("<xml><return_code>SUCCESS</return_code></xml>"))
	}
	f.Fuzz(func(t *testing.T, rule string, status int, body []byte) {
		r, err := notifier.ParseSuccessRule(rule)
		if err != nil {
			return
		}
		if again, err := notifier.ParseSuccessRule(r.String()); err != nil || again != r {
			t.Fatalf("round trip of %q: %v, %v", r.String(), again, err)
		}
		if ok, why := r.Check(status, body); !ok && why == "" {
			t.Fatalf("%v.Check failed with no reason", r)
		}
	})
}

func ExampleSuccessRule_Check() {
	show := func(ok bool, why string) {
		if ok {
			fmt.Println("delivered")
		} else {
			fmt.Println("not delivered:", why)
		}
	}
	alipay, _ := notifier.ParseSuccessRule("body:success")
	show(alipay.Check(200, []byte("success\n")))
	show(alipay.Check(200, []byte("fail")))

	wechat, _ := notifier.ParseSuccessRule("WeChat")
	show(wechat.Check(200, []byte("<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>")))
	show(wechat.Check(200, []byte("<xml><return_code><![CDATA[FAIL]]></return_code></xml>")))

	var def notifier.SuccessRule // the zero value: any 2xx
	fmt.Println(def, def.IsZero(), wechat)
	show(def.Check(503, nil))
	// Output:
	// delivered
	// not delivered: body "fail" is not "success"
	// delivered
	// not delivered: return_code "FAIL" is not "SUCCESS"
	// 2xx true wechat
	// not delivered: status 503 is not 2xx
}
