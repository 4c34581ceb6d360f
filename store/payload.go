package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// errCorrupt marks a payload that does not decode.
var errCorrupt = errors.New("corrupt payload")

// A payload is a notice as Redis and the archive keep it: a header, then
// the raw body (neither escaped nor base64-inflated). The header is binary,
// since every pending notice pays for it in Redis memory:
//
//	0x01                      format
//	3 bytes, big-endian       L, the length of what follows up to the body
//	uvarint                   stamp, Unix ms
//	uvarint, bytes            URL
//	uvarint, uvarints         schedule: slot count, then each offset in ms
//	then fields, each a tag byte, a uvarint length and that many bytes:
//	  'p' partner   'r' success rule (canonical form)   't' W3C traceparent
//	  'k' a secret (whsec_ form; repeated)   'h' a header value, "Name\x00value" (repeated)
//	the body (the rest)
//
// Payloads of earlier releases, a JSON header line then '\n' and the body,
// still decode (they start with '{'); the scripts find a header's end in
// either form (rec_head_len).
const payloadFormat = 1

// maxHeaderLen is the most a header's 3-byte length can say.
const maxHeaderLen = 1<<24 - 1

// legacyHeader is the JSON header line of earlier releases.
type legacyHeader struct {
	URL      string      `json:"u"`
	Header   http.Header `json:"h,omitempty"`
	Schedule []int64     `json:"s"`
	Stamp    int64       `json:"t"`
	Partner  string      `json:"p,omitempty"`
	Success  string      `json:"r,omitempty"`
	Secrets  []string    `json:"k,omitempty"`
	Trace    string      `json:"tp,omitempty"`
}

func encodePayload(n *notifier.Notice) ([]byte, error) {
	h := make([]byte, 4, 64+len(n.URL)+len(n.Body))
	h[0] = payloadFormat
	h = binary.AppendUvarint(h, uint64(n.Stamp.UnixMilli()))
	h = appendField(h, n.URL)
	h = binary.AppendUvarint(h, uint64(len(n.Schedule)))
	for _, d := range n.Schedule {
		h = binary.AppendUvarint(h, uint64(d.Milliseconds()))
	}
	tagged := func(tag byte, v string) {
		if v != "" {
			h = appendField(append(h, tag), v)
		}
	}
	tagged('p', n.Partner)
	if !n.Success.IsZero() {
		tagged('r', n.Success.String())
	}
	tagged('t', n.Trace)
	for _, s := range n.Secrets {
		tagged('k', s.Encode())
	}
	for _, name := range slices.Sorted(maps.Keys(n.Header)) {
		for _, v := range n.Header[name] {
			h = appendField(append(h, 'h'), name+"\x00"+v)
		}
	}
	l := len(h) - 4
	if l > maxHeaderLen {
		return nil, fmt.Errorf("encode notice %s: header of %d bytes: %w", n.ID, l, notifier.ErrInvalidNotice)
	}
	h[1], h[2], h[3] = byte(l>>16), byte(l>>8), byte(l)
	return append(h, n.Body...), nil
}

func appendField(b []byte, v string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// headLen returns the length of p's header (its first line in the legacy
// form, '\n' included) and whether p holds all of it.
func headLen(p []byte) (int, bool) {
	switch {
	case len(p) == 0:
		return 0, false
	case p[0] == '{':
		i := bytes.IndexByte(p, '\n')
		return i + 1, i >= 0
	case p[0] == payloadFormat && len(p) >= 4:
		l := 4 + int(p[1])<<16 + int(p[2])<<8 + int(p[3])
		return l, len(p) >= l
	}
	return 0, false
}

func decodePayload(id string, p []byte) (notifier.Notice, error) {
	end, ok := headLen(p)
	if !ok {
		return notifier.Notice{}, fmt.Errorf("notice %s: no complete header: %w", id, errCorrupt)
	}
	var n notifier.Notice
	var err error
	if p[0] == '{' {
		n, err = decodeLegacy(id, p[:end-1])
	} else {
		n, err = decodeBinary(id, p[4:end])
	}
	if err != nil {
		return notifier.Notice{}, fmt.Errorf("notice %s: %v: %w", id, err, errCorrupt)
	}
	n.Body = p[end:]
	if err := n.ValidateStored(); err != nil {
		return notifier.Notice{}, fmt.Errorf("notice %s: %v: %w", id, err, errCorrupt)
	}
	return n, nil
}

// headReader reads a binary header, remembering its first error.
type headReader struct {
	b   []byte
	err error
}

func (r *headReader) uvarint() uint64 {
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errors.New("bad number")
		r.b = nil
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *headReader) field() string {
	l := r.uvarint()
	if l > uint64(len(r.b)) {
		r.err = errors.New("field runs past the header")
		r.b = nil
		return ""
	}
	v := string(r.b[:l])
	r.b = r.b[l:]
	return v
}

func decodeBinary(id string, h []byte) (notifier.Notice, error) {
	r := &headReader{b: h}
	n := notifier.Notice{ID: id}
	stamp := r.uvarint()
	n.URL = r.field()
	slots := r.uvarint()
	if slots > backoff.MaxAttempts {
		return n, fmt.Errorf("%d schedule slots", slots)
	}
	n.Schedule = make(backoff.Schedule, slots)
	for i := range n.Schedule {
		n.Schedule[i] = time.Duration(r.uvarint()) * time.Millisecond
	}
	if stamp > 1<<53 {
		return n, errors.New("bad stamp")
	}
	n.Stamp = time.UnixMilli(int64(stamp))
	for len(r.b) > 0 && r.err == nil {
		tag := r.b[0]
		r.b = r.b[1:]
		v := r.field()
		if r.err != nil {
			break
		}
		switch tag {
		case 'p':
			n.Partner = v
		case 't':
			n.Trace = v
		case 'r':
			rule, err := notifier.ParseSuccessRule(v)
			if err != nil {
				return n, err
			}
			n.Success = rule
		case 'k':
			sec, err := notifier.ParseSecret(v)
			if err != nil {
				return n, errors.New("a secret does not parse")
			}
			n.Secrets = append(n.Secrets, sec)
		case 'h':
			name, val, ok := bytes.Cut([]byte(v), []byte{0})
			if !ok {
				return n, errors.New("a header without a name")
			}
			if n.Header == nil {
				n.Header = http.Header{}
			}
			n.Header[string(name)] = append(n.Header[string(name)], string(val))
		default:
			return n, fmt.Errorf("unknown field %q", tag)
		}
	}
	return n, r.err
}

func decodeLegacy(id string, line []byte) (notifier.Notice, error) {
	var h legacyHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return notifier.Notice{}, fmt.Errorf("header: %v", err)
	}
	n := notifier.Notice{
		ID: id, URL: h.URL, Header: h.Header, Stamp: time.UnixMilli(h.Stamp),
		Schedule: make(backoff.Schedule, len(h.Schedule)), Partner: h.Partner, Trace: h.Trace,
	}
	for i, ms := range h.Schedule {
		n.Schedule[i] = time.Duration(ms) * time.Millisecond
	}
	if h.Success != "" {
		r, err := notifier.ParseSuccessRule(h.Success)
		if err != nil {
			return notifier.Notice{}, err
		}
		n.Success = r
	}
	for _, k := range h.Secrets {
		sec, err := notifier.ParseSecret(k)
		if err != nil {
			return notifier.Notice{}, errors.New("a secret does not parse")
		}
		n.Secrets = append(n.Secrets, sec)
	}
	return n, nil
}

// decodeHeader decodes a payload's header, head (as readHeads returns
// it): the notice without its body.
func decodeHeader(id string, head []byte) (notifier.Notice, error) {
	n, err := decodePayload(id, head)
	n.Body = nil
	return n, err
}
