package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
)

// inputStamp is the stamp given to Line.Notice; it has sub-millisecond digits
// so truncation shows.
var inputStamp = time.Date(2025, 3, 1, 12, 0, 0, 123_456_789, time.UTC)

// parseLine decodes one input line the way a caller of Line.Notice would.
func parseLine(t *testing.T, text string) Line {
	t.Helper()
	var l Line
	if err := json.Unmarshal([]byte(text), &l); err != nil {
		t.Fatalf("decode %s: %v", text, err)
	}
	return l
}

func TestLineNotice(t *testing.T) {
	tests := []struct {
		name         string
		line         string
		wantBody     string
		wantHeader   http.Header
		wantSchedule backoff.Schedule
	}{
		{
			name:         "BodyStringIsSentAsIs",
			line:         `{"id":"a","url":"https://p.example/h","body":"a\nb"}`,
			wantBody:     "a\nb",
			wantSchedule: backoff.Default,
		},
		{
			name:         "BodyStringWithEscapesIsUnescaped",
			line:         `{"id":"a","url":"https://p.example/h","body":"\"q\" \u00e9"}`,
			wantBody:     `"q" é`,
			wantSchedule: backoff.Default,
		},
		{
			name:         "BodyObjectIsSentAsItsJSON",
			line:         `{"id":"a","url":"https://p.example/h","body":{"b": [1, 2.50],  "a":"x"}}`,
			wantBody:     `{"b": [1, 2.50],  "a":"x"}`,
			wantSchedule: backoff.Default,
		},
		{
			name:         "BodyNumberIsSentAsItsJSON",
			line:         `{"id":"a","url":"https://p.example/h","body":42}`,
			wantBody:     `42`,
			wantSchedule: backoff.Default,
		},
		{
			name:         "MissingBodyIsEmpty",
			line:         `{"id":"a","url":"https://p.example/h"}`,
			wantBody:     "",
			wantSchedule: backoff.Default,
		},
		{
			name:         "NullBodyIsEmpty",
			line:         `{"id":"a","url":"https://p.example/h","body":null}`,
			wantBody:     "",
			wantSchedule: backoff.Default,
		},
		{
			name:         "HeaderAsString",
			line:         `{"id":"a","url":"https://p.example/h","headers":{"x-trace":"t1","Authorization":"Bearer k"}}`,
			wantHeader:   http.Header{"X-Trace": {"t1"}, "Authorization": {"Bearer k"}},
			wantSchedule: backoff.Default,
		},
		{
			name:         "HeaderAsList",
			line:         `{"id":"a","url":"https://p.example/h","headers":{"X-Tag":["a","b"]}}`,
			wantHeader:   http.Header{"X-Tag": {"a", "b"}},
			wantSchedule: backoff.Default,
		},
		{
			name:         "ScheduleOverridesTheDefault",
			line:         `{"id":"a","url":"https://p.example/h","schedule":"0,200ms,400ms"}`,
			wantSchedule: backoff.Schedule{0, 200 * time.Millisecond, 400 * time.Millisecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := parseLine(t, tt.line)
			n, err := l.Notice(backoff.Default, inputStamp)
			if err != nil {
				t.Fatalf("Notice: %v", err)
			}
			if n.ID != "a" || n.URL != "https://p.example/h" {
				t.Errorf("ID, URL = %q, %q, want %q, %q", n.ID, n.URL, "a", "https://p.example/h")
			}
			if string(n.Body) != tt.wantBody {
				t.Errorf("Body = %q, want %q", n.Body, tt.wantBody)
			}
			if (len(n.Header) != 0 || len(tt.wantHeader) != 0) && !reflect.DeepEqual(n.Header, tt.wantHeader) {
				t.Errorf("Header = %v, want %v", n.Header, tt.wantHeader)
			}
			if !reflect.DeepEqual(n.Schedule, tt.wantSchedule) {
				t.Errorf("Schedule = %v, want %v", n.Schedule, tt.wantSchedule)
			}
			if want := inputStamp.Truncate(time.Millisecond); !n.Stamp.Equal(want) {
				t.Errorf("Stamp = %v, want %v (truncated to ms)", n.Stamp, want)
			}
		})
	}

	t.Run("EmptyIDGetsAFreshID", func(t *testing.T) {
		l := parseLine(t, `{"url":"https://p.example/h"}`)
		first, err := l.Notice(backoff.Default, inputStamp)
		if err != nil {
			t.Fatalf("Notice: %v", err)
		}
		second, err := l.Notice(backoff.Default, inputStamp)
		if err != nil {
			t.Fatalf("Notice: %v", err)
		}
		for _, id := range []string{first.ID, second.ID} {
			if !strings.HasPrefix(id, "n_") || len(id) != len("n_")+26 {
				t.Errorf("ID = %q, want n_ and 26 hex digits", id)
			}
			if err := ValidateID(id); err != nil {
				t.Errorf("ValidateID(%q): %v", id, err)
			}
		}
		if first.ID == second.ID {
			t.Errorf("two notices got the same id %q", first.ID)
		}
	})

	t.Run("BodyIsACopy", func(t *testing.T) {
		l := parseLine(t, `{"id":"a","url":"https://p.example/h","body":{"k":1}}`)
		n, err := l.Notice(backoff.Default, inputStamp)
		if err != nil {
			t.Fatalf("Notice: %v", err)
		}
		l.Body[1] = 'X'
		if string(n.Body) != `{"k":1}` {
			t.Errorf("Body = %q after the line changed, want %q", n.Body, `{"k":1}`)
		}
	})
}

func TestLineNoticeRefusesInvalidLines(t *testing.T) {
	tests := []struct {
		name string
		line string
	}{
		{"URLNotHTTP", `{"id":"a","url":"ftp://p.example/h"}`},
		{"URLMissing", `{"id":"a"}`},
		{"ScheduleUnparsable", `{"id":"a","url":"https://p.example/h","schedule":"soon"}`},
		{"ScheduleDecreasing", `{"id":"a","url":"https://p.example/h","schedule":"10,5"}`},
		{"HeaderNameWithSpace", `{"id":"a","url":"https://p.example/h","headers":{"Bad Name":"v"}}`},
		{"HeaderNameWithColon", `{"id":"a","url":"https://p.example/h","headers":{"Bad:Name":"v"}}`},
		{"HeaderValueNotAString", `{"id":"a","url":"https://p.example/h","headers":{"X-N":1}}`},
		{"HeaderListNotOfStrings", `{"id":"a","url":"https://p.example/h","headers":{"X-N":[1,2]}}`},
		{"HeaderReserved", `{"id":"a","url":"https://p.example/h","headers":{"webhook-id":"other"}}`},
		{"IDWithSpace", `{"id":"a b","url":"https://p.example/h"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := parseLine(t, tt.line)
			_, err := l.Notice(backoff.Default, inputStamp)
			if !errors.Is(err, ErrInvalidNotice) {
				t.Errorf("Notice(%s) error = %v, want one wrapping ErrInvalidNotice", tt.line, err)
			}
		})
	}
}

// readAll runs ReadLines over input and returns the line numbers and ids of the
// good notices and the bad lines.
func readAll(t *testing.T, input string) (good []int, ids []string, bad []*LineError) {
	t.Helper()
	now := func() time.Time { return inputStamp }
	err := ReadLines(strings.NewReader(input), backoff.Default, now,
		func(line int, n Notice) error {
			good = append(good, line)
			ids = append(ids, n.ID)
			return nil
		},
		func(e *LineError) { bad = append(bad, e) })
	if err != nil {
		t.Fatalf("ReadLines: %v", err)
	}
	return good, ids, bad
}

func TestReadLines(t *testing.T) {
	t.Run("GoodLinesAreDeliveredAroundBadOnesWithTheirLineNumbers", func(t *testing.T) {
		input := strings.Join([]string{
			`{"id":"one","url":"https://p.example/h"}`, // 1
			``,                      // 2
			`{"id":"broken","url":`, // 3
			`{"id":"two","url":"https://p.example/h","body":{"k":1}}`, // 4
			`{"id":"x","url":"https://p.example/h","colour":"red"}`,   // 5
			`{"id":"x","url":"https://p.example/h"} trailing`,         // 6
			`{"id":"x","url":"ftp://p.example/h"}`,                    // 7
			`  {"id":"three","url":"https://p.example/h"}  `,          // 8
			"   \t", // 9
			`{"id":"four","url":"https://p.example/h","schedule":"0,1"}`, // 10, no newline
		}, "\n")
		good, ids, bad := readAll(t, input)

		if want := []int{1, 4, 8, 10}; !reflect.DeepEqual(good, want) {
			t.Errorf("good lines = %v, want %v", good, want)
		}
		if want := []string{"one", "two", "three", "four"}; !reflect.DeepEqual(ids, want) {
			t.Errorf("good ids = %v, want %v", ids, want)
		}
		var badLines []int
		for _, e := range bad {
			badLines = append(badLines, e.Line)
			if !errors.Is(e, ErrInvalidNotice) {
				t.Errorf("line %d: error %v does not wrap ErrInvalidNotice", e.Line, e)
			}
		}
		if want := []int{3, 5, 6, 7}; !reflect.DeepEqual(badLines, want) {
			t.Errorf("bad lines = %v, want %v", badLines, want)
		}
	})

	// Each bad line sits on line 3, between good lines 1 and 4.
	tests := []struct {
		name string
		line string
	}{
		{"MalformedJSON", `{"id":"x","url":`},
		{"NotAnObject", `["https://p.example/h"]`},
		{"UnknownField", `{"id":"x","url":"https://p.example/h","colour":"red"}`},
		{"TrailingText", `{"id":"x","url":"https://p.example/h"} trailing`},
		{"TrailingSecondObject", `{"id":"x","url":"https://p.example/h"} {"id":"y","url":"https://p.example/h"}`},
		{"TrailingClosingBrace", `{"id":"x","url":"https://p.example/h"}}`},
		{"TrailingClosingBracket", `{"id":"x","url":"https://p.example/h"}]`},
		{"BadURL", `{"id":"x","url":"ftp://p.example/h"}`},
		{"BadSchedule", `{"id":"x","url":"https://p.example/h","schedule":"later"}`},
		{"BadHeader", `{"id":"x","url":"https://p.example/h","headers":{"Notice-Attempt":"9"}}`},
		{"LineTooLong", `{"id":"x","url":"https://p.example/h","body":"` + strings.Repeat("b", maxLine) + `"}`},
	}
	for _, tt := range tests {
		t.Run("ReportsBadLine/"+tt.name, func(t *testing.T) {
			input := `{"id":"one","url":"https://p.example/h"}` + "\n\n" + tt.line + "\n" +
				`{"id":"two","url":"https://p.example/h"}` + "\n"
			good, _, bad := readAll(t, input)
			if want := []int{1, 4}; !reflect.DeepEqual(good, want) {
				t.Errorf("good lines = %v, want %v", good, want)
			}
			if len(bad) != 1 || bad[0].Line != 3 {
				t.Fatalf("bad = %v, want one error on line 3", bad)
			}
			if !errors.Is(bad[0], ErrInvalidNotice) {
				t.Errorf("error %v does not wrap ErrInvalidNotice", bad[0])
			}
			if got := bad[0].Error(); !strings.HasPrefix(got, "line 3: ") {
				t.Errorf("Error() = %q, want it to start with %q", got, "line 3: ")
			}
		})
	}

	t.Run("StopsAtTheFirstErrorFromFn", func(t *testing.T) {
		stop := errors.New("store is down")
		input := `{"id":"one","url":"https://p.example/h"}` + "\n" + `{"id":"two","url":"https://p.example/h"}` + "\n"
		var calls int
		err := ReadLines(strings.NewReader(input), backoff.Default, func() time.Time { return inputStamp },
			func(int, Notice) error { calls++; return stop },
			func(e *LineError) { t.Errorf("unexpected bad line: %v", e) })
		if !errors.Is(err, stop) {
			t.Errorf("ReadLines error = %v, want %v", err, stop)
		}
		if calls != 1 {
			t.Errorf("fn called %d times, want 1", calls)
		}
	})
}

// TestReadLinesRefusesBodiesThatAreNotUTF8: a body of invalid UTF-8 was
// sent as its raw bytes when its string had no escape and as U+FFFD when it
// had one. Either way the line is refused, with a one-line reason.
func TestReadLinesRefusesBodiesThatAreNotUTF8(t *testing.T) {
	tests := []struct {
		name string
		body string // the JSON value of the body field, as raw bytes
	}{
		{"StringWithoutEscapes", "\"caf\xe9\""},
		{"StringWithAnEscape", "\"caf\xe9\\n\""},
		{"TruncatedSequence", "\"\xe2\x82\""},
		{"Object", "{\"k\":\"\xff\"}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := `{"id":"one","url":"https://p.example/h"}` + "\n" +
				`{"id":"bad","url":"https://p.example/h","body":` + tt.body + "}\n"
			good, _, bad := readAll(t, input)
			if !reflect.DeepEqual(good, []int{1}) {
				t.Errorf("good lines = %v, want [1]", good)
			}
			if len(bad) != 1 || bad[0].Line != 2 {
				t.Fatalf("bad = %v, want one error on line 2", bad)
			}
			msg := bad[0].Error()
			if !errors.Is(bad[0], ErrInvalidNotice) || !strings.Contains(msg, "not valid UTF-8") || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line wrapping ErrInvalidNotice that says the body is not valid UTF-8", msg)
			}
		})
	}
	t.Run("ValidUTF8WithEscapesIsSent", func(t *testing.T) {
		l := parseLine(t, `{"id":"a","url":"https://p.example/h","body":"café \u00e9\n"}`)
		n, err := l.Notice(backoff.Default, inputStamp)
		if err != nil || string(n.Body) != "café é\n" {
			t.Errorf("Notice() = body %q, %v; want %q", n.Body, err, "café é\n")
		}
	})
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in        string
		wantName  string
		wantValue string
		wantErr   bool
	}{
		{in: "K: V", wantName: "K", wantValue: "V"},
		{in: "K:V", wantName: "K", wantValue: "V"},
		{in: "  Authorization :  Bearer a:b  ", wantName: "Authorization", wantValue: "Bearer a:b"},
		{in: "K:", wantName: "K", wantValue: ""},
		{in: ": v", wantErr: true},
		{in: "novalue", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			name, value, err := ParseHeader(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidNotice) {
					t.Errorf("ParseHeader(%q) error = %v, want one wrapping ErrInvalidNotice", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHeader(%q): %v", tt.in, err)
			}
			if name != tt.wantName || value != tt.wantValue {
				t.Errorf("ParseHeader(%q) = %q, %q, want %q, %q", tt.in, name, value, tt.wantName, tt.wantValue)
			}
		})
	}
}

// refusing is an Enqueuer that refuses ids ending in 7 as duplicates.
// EnqueueLines calls it from two goroutines, as it does a store.
type refusing struct {
	mu  sync.Mutex
	got []string
}

func (r *refusing) Enqueue(_ context.Context, ns []Notice) ([]error, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := make([]error, len(ns))
	for i, n := range ns {
		if strings.HasSuffix(n.ID, "7") {
			errs[i] = ErrDuplicate
			continue
		}
		r.got = append(r.got, n.ID)
	}
	return errs, nil
}

func TestEnqueueLinesAcrossBatches(t *testing.T) {
	var b strings.Builder
	const total = 2500
	for i := range total {
		if i == 1500 {
			b.WriteString("not json\n") // line 1501
		}
		fmt.Fprintf(&b, `{"id":"n%d","url":"https://p.example/h"}`+"\n", i)
	}
	q := &refusing{}
	var bad []*LineError
	n, err := EnqueueLines(context.Background(), strings.NewReader(b.String()), q, backoff.Default, time.Now, func(e *LineError) { bad = append(bad, e) })
	if err != nil {
		t.Fatal(err)
	}
	if want := total - total/10; n != want || len(q.got) != want {
		t.Errorf("enqueued %d (store got %d), want %d", n, len(q.got), want)
	}
	if len(bad) != total/10+1 {
		t.Fatalf("%d bad lines, want %d", len(bad), total/10+1)
	}
	lines := map[int]bool{}
	for i, e := range bad {
		lines[e.Line] = true
		if i > 0 && e.Line <= bad[i-1].Line {
			t.Errorf("line %d reported after line %d: want line order", e.Line, bad[i-1].Line)
		}
	}
	// n7 is on line 8; n1507 sits after the bad line 1501, on line 1509.
	for _, want := range []int{8, 1501, 1509, total + 1 - 2} {
		if !lines[want] {
			t.Errorf("line %d not reported; got %d lines", want, len(lines))
		}
	}
}

// failing stores the first batch it is given, then fails: of the second
// batch it stores the first half and cannot confirm the rest.
type failing struct {
	mu      sync.Mutex
	batches int
	stored  map[string]bool
}

func (f *failing) Enqueue(_ context.Context, ns []Notice) ([]error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches++
	errs := make([]error, len(ns))
	if f.batches == 1 {
		for _, n := range ns {
			f.stored[n.ID] = true
		}
		return errs, nil
	}
	for i, n := range ns {
		if i < len(ns)/2 {
			f.stored[n.ID] = true
		} else {
			errs[i] = fmt.Errorf("notice %s: %w", n.ID, ErrUnconfirmed)
		}
	}
	return errs, errors.New("i/o timeout")
}

// TestEnqueueLinesAccountsForEveryLineWhenTheStoreFails: after the store
// fails, every line read is either counted as enqueued (and stored) or
// reported, once, as unconfirmed or not stored.
func TestEnqueueLinesAccountsForEveryLineWhenTheStoreFails(t *testing.T) {
	var b strings.Builder
	const total = 5000
	for i := range total {
		fmt.Fprintf(&b, `{"id":"n%d","url":"https://p.example/h"}`+"\n", i)
	}
	q := &failing{stored: map[string]bool{}}
	reported := map[int]error{}
	var mu sync.Mutex
	n, err := EnqueueLines(context.Background(), strings.NewReader(b.String()), q, backoff.Default, time.Now, func(e *LineError) {
		mu.Lock()
		defer mu.Unlock()
		if _, twice := reported[e.Line]; twice {
			t.Errorf("line %d reported twice", e.Line)
		}
		reported[e.Line] = e.Err
	})
	if err == nil {
		t.Fatal("EnqueueLines hid the store's failure")
	}
	if n != len(q.stored) {
		t.Errorf("enqueued %d, but the store holds %d", n, len(q.stored))
	}
	for line, e := range reported {
		if q.stored[fmt.Sprintf("n%d", line-1)] {
			t.Errorf("line %d reported (%v) but stored", line, e)
		}
		if !errors.Is(e, ErrUnconfirmed) && !errors.Is(e, ErrNotStored) {
			t.Errorf("line %d: %v, want unconfirmed or not stored", line, e)
		}
	}
	if n+len(reported) < enqueueFirstBatch+2*enqueueFirstBatch {
		t.Errorf("%d lines accounted for, want at least the two batches sent", n+len(reported))
	}
}

// sizes is an Enqueuer that stores everything and records the size of
// each batch it is sent.
type sizes struct {
	mu    sync.Mutex
	sizes []int
}

func (s *sizes) Enqueue(_ context.Context, ns []Notice) ([]error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, len(ns))
	return make([]error, len(ns)), nil
}

// TestEnqueueLinesStartsSmall: the first batches are small, so the store
// starts while the reader is still decoding, and double up to the full
// batch; every line is sent once.
func TestEnqueueLinesStartsSmall(t *testing.T) {
	var b strings.Builder
	const total = 5000
	for i := range total {
		fmt.Fprintf(&b, `{"id":"n%d","url":"https://p.example/h"}`+"\n", i)
	}
	q := &sizes{}
	n, err := EnqueueLines(context.Background(), strings.NewReader(b.String()), q, backoff.Default, time.Now, func(e *LineError) {
		t.Errorf("line %d: %v", e.Line, e.Err)
	})
	if err != nil || n != total {
		t.Fatalf("EnqueueLines = %d, %v; want %d", n, err, total)
	}
	slices.Sort(q.sizes) // senders run in any order
	// 64 + 128 + 256 + 512, four of 1,000, and the 40 left.
	if want := []int{40, 64, 128, 256, 512, 1000, 1000, 1000, 1000}; !slices.Equal(q.sizes, want) {
		t.Errorf("batch sizes %v (sorted), want %v", q.sizes, want)
	}
}

// TestEnqueueFileErrorsReadAsWords: each bad line is reported once, in
// line order (a refusal from the store between decoding errors keeps its
// place), with a message about the line, not the JSON decoder's state.
func TestEnqueueFileErrorsReadAsWords(t *testing.T) {
	input := strings.Join([]string{
		`{"id":"n1","url":"https://p.example/h"}`,
		`not json`,
		`{"id":"n3","url":5}`,
		`[1]`,
		`{"id":"n5","url":"https://p.example/h","colour":"red"}`,
		`{"id":"n6","url":"https://p.example/h`,
		`{"id":"n7","url":"https://p.example/h"}`, // refused by the store: a duplicate
		`{"id":"n8","url":"https://p.example/h","secrets":"whsec_x"}`,
	}, "\n")
	var got []string
	n, err := EnqueueLines(context.Background(), strings.NewReader(input), &refusing{}, backoff.Default, time.Now,
		func(e *LineError) { got = append(got, e.Error()) })
	if err != nil || n != 1 {
		t.Fatalf("EnqueueLines = %d, %v; want 1 enqueued", n, err)
	}
	want := []string{
		`line 2: invalid notice: not valid JSON (at byte 2): each line must be one object, such as {"url":"https://…","body":"…"}`,
		`line 3: invalid notice: field "url": want a string, got a number`,
		`line 4: invalid notice: want a JSON object, got an array`,
		`line 5: invalid notice: unknown field "colour" (a line has id, url, body, headers, schedule, partner, success, secrets)`,
		`line 6: invalid notice: the JSON object is not closed before the end of the line`,
		`line 7: ` + ErrDuplicate.Error(),
		`line 8: invalid notice: field "secrets": want a list of strings, got a string`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("reported\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
