package notifier

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
)

// FuzzReadLines feeds the `enqueue --file` reader any bytes: it must not
// panic or fail on input that reads without error, and every non-blank line
// must come out exactly once, either as a notice that validates or as a
// LineError wrapping ErrInvalidNotice, so no line is lost or reported twice.
func FuzzReadLines(f *testing.F) {
	for _, seed := range []string{
		`{"id":"n1","url":"https://partner.example/hook","body":{"a":1}}`,
		`{"url":"https://partner.example/hook","body":"plain \"text\"","headers":{"X-A":"1","X-B":["2","3"]},"schedule":"0,1,2"}`,
		"{\"url\":\"http://p.example/\"}\n\n  \n{\"url\":\"ftp://p.example/\"}\r\n{\"url\":\"http://p.example/\"}}",
		`{"url":"http://p.example/","extra":1}`,
		`{"url":"http://p.example/","schedule":"10,5"}`,
		`{"url":"http://p.example/","headers":{"Webhook-Id":"x"}}`,
		`{"url":"http://p.example/","headers":{"X-A":1}}`,
		`{"url":"http://p.example/","headers":{"":"x"}}`,
		`{"id":"has space","url":"http://p.example/"}`,
		`{"url":"http://p.example/","body":null}`,
		`{"url":"http://p.example/","body":"\u00e9\ud800"}`,
		"{\"url\":\"http://p.example/\",\"body\":\"\xff\"}",
		`{"url":"http://p.example/"} {"url":"http://p.example/"}`,
		`null`,
		`[]`,
		`"x"`,
		`{`,
		"\x00",
		"",
	} {
		f.Add([]byte(seed))
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 123_456_789, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		reported := map[int]string{}
		last := 0
		err := ReadLines(bytes.NewReader(data), backoff.Default, func() time.Time { return now },
			func(ln int, n Notice) error {
				if ln <= last {
					t.Fatalf("notice on line %d after line %d", ln, last)
				}
				last = ln
				reported[ln] = "notice"
				if err := n.Validate(); err != nil {
					t.Fatalf("line %d: notice %+v does not validate: %v", ln, n, err)
				}
				if !n.Stamp.Equal(now.Truncate(time.Millisecond)) {
					t.Fatalf("line %d: stamp %v, want %v", ln, n.Stamp, now.Truncate(time.Millisecond))
				}
				return nil
			},
			func(e *LineError) {
				if e == nil {
					t.Fatal("nil LineError")
				}
				if e.Line <= last {
					t.Fatalf("LineError on line %d after line %d", e.Line, last)
				}
				last = e.Line
				reported[e.Line] = "error"
				if !errors.Is(e, ErrInvalidNotice) {
					t.Fatalf("line %d: %v does not wrap ErrInvalidNotice", e.Line, e)
				}
			})
		if err != nil {
			t.Fatalf("ReadLines: %v, want nil: only read errors are returned", err)
		}
		for i, line := range bytes.Split(data, []byte("\n")) {
			ln := i + 1
			_, got := reported[ln]
			if want := len(bytes.TrimSpace(line)) > 0; got != want {
				t.Fatalf("line %d %q: reported = %v, want %v", ln, line, got, want)
			}
			delete(reported, ln)
		}
		if len(reported) > 0 {
			t.Fatalf("reports for lines that do not exist: %v", reported)
		}
	})
}
