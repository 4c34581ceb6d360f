package notifier

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/notifier/notifier/backoff"
)

// Line is one notice as written in an `enqueue --file` line (and, later, the
// HTTP API): {"id","url","body","headers","schedule"}. Field names are a
// contract.
type Line struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Body is sent as-is when it is a JSON string, else as the JSON
	// encoding of the value. It must be valid UTF-8, as JSON text is: a
	// line whose body is not is refused rather than sent altered (a line
	// has no field for binary bodies). Escapes of lone surrogates, such as
	// "\ud800", decode to U+FFFD, as in encoding/json.
	Body json.RawMessage `json:"body"`
	// Headers maps a name to a value or a list of values.
	Headers map[string]json.RawMessage `json:"headers"`
	// Schedule is a LIST or preset name as for --schedule; empty means the
	// partner's, else the default.
	Schedule string `json:"schedule"`
	// Partner names the notice's partner (as enqueue --partner).
	Partner string `json:"partner,omitempty"`
	// Success is the notice's success rule (as enqueue --success).
	Success string `json:"success,omitempty"`
	// Secrets sign its attempts (as enqueue --secret).
	Secrets []string `json:"secrets,omitempty"`
}

// NewID returns a random notice id: 26 hex digits after "n_".
func NewID() string {
	var b [13]byte
	_, _ = rand.Read(b[:])
	return "n_" + hex.EncodeToString(b[:])
}

// Notice turns l into a Notice stamped at stamp, with def as the schedule
// when l names none and a fresh id when it has none.
func (l *Line) Notice(def backoff.Schedule, stamp time.Time) (Notice, error) {
	return l.notice(def, stamp, nil)
}

// notice is Notice, with d (if not nil) remembering schedules and URL
// verdicts across the lines of one input.
func (l *Line) notice(def backoff.Schedule, stamp time.Time, d *lineDecoder) (Notice, error) {
	n := Notice{ID: l.ID, URL: l.URL, Schedule: def, Stamp: stamp.Truncate(time.Millisecond), Partner: l.Partner,
		scheduleDefaulted: l.Schedule == ""}
	if n.ID == "" {
		n.ID = NewID()
	}
	if l.Success != "" {
		r, err := ParseSuccessRule(l.Success)
		if err != nil {
			return Notice{}, fmt.Errorf("%w: %v", ErrInvalidNotice, err)
		}
		n.Success = r
	}
	for _, k := range l.Secrets {
		sec, err := ParseSecret(k)
		if err != nil {
			return Notice{}, fmt.Errorf("%w: %v", ErrInvalidNotice, err)
		}
		n.Secrets = append(n.Secrets, sec)
	}
	if !utf8.Valid(l.Body) {
		// Left alone, such bytes went out raw from a string without
		// escapes and as U+FFFD from one with.
		return Notice{}, fmt.Errorf("%w: body is not valid UTF-8 (a JSON line carries text only)", ErrInvalidNotice)
	}
	if len(l.Body) > 0 && !bytes.Equal(l.Body, []byte("null")) {
		if l.Body[0] == '"' {
			if bytes.IndexByte(l.Body, '\\') < 0 {
				// No escapes: the decoder has validated the string, so
				// its bytes between the quotes are the body (the common
				// case, and it saves scanning the body a second time).
				n.Body = append([]byte(nil), l.Body[1:len(l.Body)-1]...)
			} else {
				var s string
				if err := json.Unmarshal(l.Body, &s); err != nil {
					return Notice{}, fmt.Errorf("%w: body: %v", ErrInvalidNotice, err)
				}
				n.Body = []byte(s)
			}
		} else {
			n.Body = append([]byte(nil), l.Body...)
		}
	}
	if len(l.Headers) > 0 {
		n.Header = make(http.Header, len(l.Headers))
		for k, raw := range l.Headers {
			var one string
			var many []string
			if err := json.Unmarshal(raw, &one); err == nil {
				n.Header.Add(k, one)
			} else if err := json.Unmarshal(raw, &many); err == nil {
				for _, v := range many {
					n.Header.Add(k, v)
				}
			} else {
				return Notice{}, fmt.Errorf("%w: header %q: want a string or a list of strings", ErrInvalidNotice, k)
			}
		}
	}
	if l.Schedule != "" {
		s, err := d.schedule(l.Schedule)
		if err != nil {
			return Notice{}, fmt.Errorf("%w: %v", ErrInvalidNotice, err)
		}
		n.Schedule = s
	}
	check := (*Notice).Validate
	if d != nil {
		check = func(n *Notice) error { return n.ValidateMemo(&d.urls) }
	}
	if err := check(&n); err != nil {
		return Notice{}, err
	}
	return n, nil
}

// ParseHeader reads a --header value "Name: value".
func ParseHeader(h string) (name, value string, err error) {
	name, value, ok := strings.Cut(h, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return "", "", fmt.Errorf("%w: header %q: want 'Name: value'", ErrInvalidNotice, h)
	}
	return name, strings.TrimSpace(value), nil
}

// LineError is a bad line of an `enqueue --file` input.
type LineError struct {
	Line int
	Err  error
}

// Error says which line and why.
func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap gives the reason, for errors.Is.
func (e *LineError) Unwrap() error { return e.Err }

// maxLine bounds one input line: the largest body plus room for the rest.
const maxLine = 2*MaxBodyBytes + 64<<10

// ReadLines reads JSON lines from r and calls fn with each good notice and
// its line number; blank lines are skipped. Bad lines are reported to bad and
// reading goes on, so good lines are never dropped for a bad neighbour. It
// returns only read errors.
func ReadLines(r io.Reader, def backoff.Schedule, now func() time.Time, fn func(line int, n Notice) error, bad func(*LineError)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	d := &lineDecoder{def: def, now: now}
	for ln := 1; ; ln++ {
		line, tooLong, rerr := readLine(br, maxLine)
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("read notices: %w", rerr)
		}
		if tooLong {
			bad(&LineError{Line: ln, Err: fmt.Errorf("%w: line is longer than %d bytes", ErrInvalidNotice, maxLine)})
		}
		if text := bytes.TrimSpace(line); len(text) > 0 && !tooLong {
			if err := d.decodeLine(ln, text, fn, bad); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
	}
}

// readLine reads one line of at most limit bytes; a longer one is skipped
// to its end and reported as tooLong, so the lines after it still count. A
// line that fits br's buffer is returned in it, valid until the next read.
func readLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for first := true; ; first = false {
		chunk, err := br.ReadSlice('\n')
		if first && err != bufio.ErrBufferFull {
			return chunk, false, err
		}
		if !tooLong {
			if len(line)+len(chunk) > limit {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, tooLong, err
	}
}

// decodeLine decodes one non-blank line: with fast, else with
// encoding/json.
func (d *lineDecoder) decodeLine(ln int, text []byte, fn func(line int, n Notice) error, bad func(*LineError)) error {
	var l Line
	if !d.fast(text, &l) {
		if e := decodeJSON(text, &l); e != nil {
			bad(&LineError{Line: ln, Err: e})
			return nil
		}
	}
	n, err := l.notice(d.def, d.now(), d)
	if err != nil {
		bad(&LineError{Line: ln, Err: err})
		return nil
	}
	return fn(ln, n)
}

// decodeJSON decodes text into l with encoding/json; the error says what is
// wrong with the line.
func decodeJSON(text []byte, l *Line) error {
	*l = Line{}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(l); err != nil {
		return lineJSONError(text, err)
	}
	// More() is false before a stray '}' or ']', so ask for the next
	// token instead: only the end of the line is acceptable.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: text after the JSON object", ErrInvalidNotice)
	}
	return nil
}

// lineFields names the fields of a line, for the message about an unknown one.
const lineFields = "id, url, body, headers, schedule, partner, success, secrets"

// lineJSONError says in words what is wrong with a line that did not
// decode: encoding/json's own messages ("invalid character 'o' in literal
// null") describe the decoder's state, not the line's mistake.
func lineJSONError(text []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%w: not valid JSON (at byte %d): each line must be one object, such as {\"url\":\"https://…\",\"body\":\"…\"}", ErrInvalidNotice, syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: the JSON object is not closed before the end of the line", ErrInvalidNotice)
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Errorf("%w: want a JSON object, got %s", ErrInvalidNotice, article(typ.Value))
	case errors.As(err, &typ):
		return fmt.Errorf("%w: field %q: want %s, got %s", ErrInvalidNotice, typ.Field, jsonKind(typ.Type), article(typ.Value))
	}
	// The one error left that the decoder reports without a type is an
	// unknown field (DisallowUnknownFields): find it by decoding again.
	var fields map[string]json.RawMessage
	if json.Unmarshal(text, &fields) == nil {
		known := reflect.TypeFor[Line]()
		for name := range fields {
			if !slices.ContainsFunc(reflect.VisibleFields(known), func(f reflect.StructField) bool {
				tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				return tag == name
			}) {
				return fmt.Errorf("%w: unknown field %q (a line has %s)", ErrInvalidNotice, name, lineFields)
			}
		}
	}
	return fmt.Errorf("%w: %v", ErrInvalidNotice, err)
}

// jsonKind names what a value of Go type t is written as in JSON.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.Kind().String()
}

// article puts "a" or "an" before a JSON kind as encoding/json names it
// (string, number, object, array, bool).
func article(kind string) string {
	if kind == "" {
		return "something else"
	}
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// Enqueuer stores new notices; store.Redis implements it. EnqueueLines
// calls it from several goroutines at once. Enqueue returns
// one error per notice (nil, or one wrapping ErrDuplicate or
// ErrInvalidNotice) and an error of its own if the store failed.
type Enqueuer interface {
	Enqueue(ctx context.Context, ns []Notice) ([]error, error)
}

// enqueueBatch is how many notices EnqueueLines hands the store at a
// time, and enqueueFirstBatch how many its first batch holds; each batch
// after it holds twice the one before, up to enqueueBatch.
const enqueueBatch, enqueueFirstBatch = 1000, 64

// EnqueueLines reads JSON lines from r (see ReadLines) and enqueues the good
// ones in batches of 1,000 (the first ones smaller). The next batch is read
// and decoded while the previous one is in flight, so parsing and the
// store's round trips overlap.
// Bad lines and refused notices go to bad, with their line numbers, in line
// order (a bad line is held back until the notices read before it are
// settled); the rest are enqueued regardless. It returns how many notices
// were enqueued.
func EnqueueLines(ctx context.Context, r io.Reader, q Enqueuer, def backoff.Schedule, now func() time.Time, bad func(*LineError)) (int, error) {
	// Senders keep this many pipelines in flight. Redis runs the
	// scripts one at a time, so more would not make it faster; but with
	// only two, both often finished together and Redis waited while
	// they decoded their next batches' replies and built the next
	// pipelines, and on a busy machine it waited for them to be
	// scheduled.
	const senders = 4
	// A batch is the notices read since the previous one, and the lines
	// refused while reading them: reported together, in line order, once
	// every earlier batch has been.
	type batch struct {
		seq   int
		ns    []Notice
		lines []int
		bad   []*LineError
	}
	var mu sync.Mutex // guards turn, enqueued and sendErr: the reader and the senders share them
	turn := 0         // the seq of the next batch to report
	turned := sync.NewCond(&mu)
	batches := make(chan batch, senders)
	var (
		enqueued int
		sendErr  error
		wg       sync.WaitGroup
	)
	done := make(chan struct{}) // closed when a send fails
	var once sync.Once
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				mu.Lock()
				failed := sendErr != nil
				mu.Unlock()
				var errs []error
				var err error
				switch {
				case len(b.ns) == 0: // only refused lines
				case failed:
					// Drain, saying of each line that it was not
					// stored: the reader stops at its next batch.
					errs = make([]error, len(b.ns))
					for i, n := range b.ns {
						errs[i] = fmt.Errorf("notice %s: %w: enqueue stopped after Redis failed", n.ID, ErrNotStored)
					}
				default:
					errs, err = q.Enqueue(ctx, b.ns)
				}
				// Even after a failure the store says of each notice
				// whether it was stored, so every line is accounted for.
				report, stored := b.bad, 0
				for i := range b.ns {
					switch {
					case errs == nil: // the store failed before sending anything
						report = append(report, &LineError{Line: b.lines[i], Err: fmt.Errorf("notice %s: %w: %v", b.ns[i].ID, ErrNotStored, err)})
					case errs[i] != nil:
						report = append(report, &LineError{Line: b.lines[i], Err: errs[i]})
					default:
						stored++
					}
				}
				slices.SortStableFunc(report, func(a, b *LineError) int { return a.Line - b.Line })
				mu.Lock()
				if err != nil && sendErr == nil {
					sendErr = err
					once.Do(func() { close(done) })
				}
				for turn != b.seq {
					turned.Wait()
				}
				for _, e := range report {
					bad(e)
				}
				enqueued += stored
				turn++
				turned.Broadcast()
				mu.Unlock()
			}
		}()
	}
	// The first batches are small, doubling up to enqueueBatch, so that
	// the store starts on the first notices while the rest of the first
	// thousand are still being read: a first batch of a thousand kept
	// Redis idle, at the start of every file, for as long as decoding
	// the whole batch took.
	seq, size := 0, enqueueFirstBatch
	next := func() batch {
		seq++
		if seq > 1 {
			size = min(2*size, enqueueBatch)
		}
		return batch{seq: seq - 1, ns: make([]Notice, 0, size), lines: make([]int, 0, size)}
	}
	cur := next()
	failed := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	err := ReadLines(r, def, now, func(ln int, n Notice) error {
		cur.ns, cur.lines = append(cur.ns, n), append(cur.lines, ln)
		if len(cur.ns) == size {
			if failed() {
				return errors.New("enqueue stopped")
			}
			batches <- cur
			cur = next()
		}
		return nil
	}, func(e *LineError) { cur.bad = append(cur.bad, e) })
	// What was read before any failure is still enqueued, or reported.
	if len(cur.ns) > 0 || len(cur.bad) > 0 {
		batches <- cur
	}
	close(batches)
	wg.Wait()
	if sendErr != nil {
		return enqueued, sendErr
	}
	return enqueued, err
}
