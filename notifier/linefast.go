package notifier

import (
	"time"

	"github.com/notifier/notifier/backoff"
)

// lineDecoder decodes the lines of one `enqueue --file` input. It takes the
// common shape of a line without encoding/json (see fast) and remembers
// what lines tend to repeat: the last URL and schedule, and URL verdicts.
// Every line decodes to what encoding/json and Line.Notice make of it.
type lineDecoder struct {
	def   backoff.Schedule
	now   func() time.Time
	urls  URLMemo
	url   string // the last URL, so lines that repeat it share one string
	sched string // the last schedule text that parsed, and its schedule
	parsd backoff.Schedule
}

// schedule parses text as backoff.Parse does, remembering the last text
// that parsed. Parse is a function of the text, and no one changes a
// schedule in place, so notices may share one.
func (d *lineDecoder) schedule(text string) (backoff.Schedule, error) {
	if d == nil {
		return backoff.Parse(text)
	}
	if text == d.sched && d.parsd != nil {
		return d.parsd, nil
	}
	s, err := backoff.Parse(text)
	if err == nil {
		d.sched, d.parsd = text, s
	}
	return s, err
}

// fast decodes text, a trimmed line, into l when the line has the common
// shape: one JSON object whose keys are among id, url, body, schedule,
// partner and success, each at most once and spelt exactly so; whose
// values are strings of printable ASCII without escapes, bar body, which
// may be any JSON value; and nothing after it. It reports false for any
// other line, which the caller then decodes with encoding/json: so fast
// takes only lines that encoding/json decodes to the same Line, and every
// error message stays encoding/json's.
func (d *lineDecoder) fast(text []byte, l *Line) bool {
	s := scanner{b: text}
	if !s.byte('{') {
		return false
	}
	s.ws()
	if s.byte('}') {
		return s.i == len(s.b)
	}
	var seen uint8
	for {
		key, ok := s.plain()
		if !ok {
			return false
		}
		s.ws()
		if !s.byte(':') {
			return false
		}
		s.ws()
		var bit uint8
		var dst *string
		switch string(key) {
		case "id":
			bit, dst = 1, &l.ID
		case "url":
			bit, dst = 2, &l.URL
		case "schedule":
			bit, dst = 4, &l.Schedule
		case "partner":
			bit, dst = 8, &l.Partner
		case "success":
			bit, dst = 16, &l.Success
		case "body":
			bit = 32
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		if dst == nil {
			start := s.i
			if !s.value(0) {
				return false
			}
			l.Body = text[start:s.i:s.i]
		} else {
			v, ok := s.plain()
			if !ok {
				return false
			}
			switch {
			case bit == 2 && string(v) == d.url:
				*dst = d.url
			case bit == 4 && string(v) == d.sched:
				*dst = d.sched
			default:
				*dst = string(v)
			}
		}
		s.ws()
		if s.byte('}') {
			if l.URL != "" {
				d.url = l.URL
			}
			return s.i == len(s.b)
		}
		if !s.byte(',') {
			return false
		}
		s.ws()
	}
}

// scanner reads JSON from b at i. Its methods report false for what they do
// not take, which is all invalid JSON and some valid JSON.
type scanner struct {
	b []byte
	i int
}

// maxDepth bounds the nesting fast takes (encoding/json takes 10,000).
const maxDepth = 100

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (s *scanner) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// plain reads a string of printable ASCII without escapes and returns
// what is between its quotes.
func (s *scanner) plain() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// value skips one JSON value, checking it as encoding/json's scanner does.
func (s *scanner) value(depth int) bool {
	if s.i >= len(s.b) || depth > maxDepth {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.str()
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// str skips a string: any bytes from 0x20 up but for '"' and '\\', and the
// escapes JSON defines.
func (s *scanner) str() bool {
	s.i++ // the opening quote
	for s.i < len(s.b) {
		c := s.b[s.i]
		s.i++
		switch {
		case c == '"':
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if s.i >= len(s.b) {
				return false
			}
			e := s.b[s.i]
			s.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for range 4 {
					if s.i >= len(s.b) || !isHex(s.b[s.i]) {
						return false
					}
					s.i++
				}
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number skips -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *scanner) number() bool {
	s.byte('-')
	switch {
	case s.byte('0'):
	case s.digits() == 0:
		return false
	}
	if s.byte('.') && s.digits() == 0 {
		return false
	}
	if s.byte('e') || s.byte('E') {
		if !s.byte('+') {
			s.byte('-')
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *scanner) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

func (s *scanner) object(depth int) bool {
	s.i++ // '{'
	s.ws()
	if s.byte('}') {
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' || !s.str() {
			return false
		}
		s.ws()
		if !s.byte(':') {
			return false
		}
		s.ws()
		if !s.value(depth) {
			return false
		}
		s.ws()
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
		s.ws()
	}
}

func (s *scanner) array(depth int) bool {
	s.i++ // '['
	s.ws()
	if s.byte(']') {
		return true
	}
	for {
		if !s.value(depth) {
			return false
		}
		s.ws()
		if s.byte(']') {
			return true
		}
		if !s.byte(',') {
			return false
		}
		s.ws()
	}
}
