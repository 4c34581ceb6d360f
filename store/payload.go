package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// errCorrupt marks a payload that does not decode.
var errCorrupt = errors.New("corrupt payload")

// payloadHeader is the first line of a payload. Short JSON names keep Redis
// memory down; the body follows the newline raw, so it is neither escaped
// nor base64-inflated.
type payloadHeader struct {
	URL      string      `json:"u"`
	Header   http.Header `json:"h,omitempty"`
	Schedule []int64     `json:"s"` // offsets in ms
	Stamp    int64       `json:"t"` // Unix ms
	Partner  string      `json:"p,omitempty"`
	Success  string      `json:"r,omitempty"` // success rule, canonical form
	Secrets  []string    `json:"k,omitempty"` // whsec_ form
	// W3C traceparent of the enqueue span; only when tracing is on.
	Trace string `json:"tp,omitempty"`
}

func encodePayload(n *notifier.Notice) ([]byte, error) {
	if p, ok := appendPlainPayload(n); ok {
		return p, nil
	}
	h := payloadHeader{URL: n.URL, Header: n.Header, Stamp: n.Stamp.UnixMilli(), Partner: n.Partner, Trace: n.Trace}
	if !n.Success.IsZero() {
		h.Success = n.Success.String()
	}
	for _, s := range n.Secrets {
		h.Secrets = append(h.Secrets, s.Encode())
	}
	h.Schedule = make([]int64, len(n.Schedule))
	for i, d := range n.Schedule {
		h.Schedule[i] = d.Milliseconds()
	}
	line, err := json.Marshal(h) // json.Marshal escapes '\n', so the first newline ends the header
	if err != nil {
		return nil, fmt.Errorf("encode notice %s: %w", n.ID, err)
	}
	out := make([]byte, 0, len(line)+1+len(n.Body))
	out = append(append(append(out, line...), '\n'), n.Body...)
	return out, nil
}

// appendPlainPayload is encodePayload for the common notice, without
// headers, success rule, secrets or trace context, whose URL and partner
// need no escaping: the same bytes as json.Marshal gives, without its
// reflection. It reports false for any other notice.
func appendPlainPayload(n *notifier.Notice) ([]byte, bool) {
	if len(n.Header) > 0 || !n.Success.IsZero() || len(n.Secrets) > 0 || n.Trace != "" || !plainJSON(n.URL) || !plainJSON(n.Partner) {
		return nil, false
	}
	out := make([]byte, 0, 32+len(n.URL)+len(n.Partner)+14*len(n.Schedule)+1+len(n.Body))
	out = append(append(append(out, `{"u":"`...), n.URL...), `","s":[`...)
	for i, d := range n.Schedule {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendInt(out, d.Milliseconds(), 10)
	}
	out = strconv.AppendInt(append(out, `],"t":`...), n.Stamp.UnixMilli(), 10)
	if n.Partner != "" {
		out = append(append(append(out, `,"p":"`...), n.Partner...), '"')
	}
	return append(append(append(out, '}'), '\n'), n.Body...), true
}

// plainJSON reports whether json.Marshal writes s as itself between quotes:
// printable ASCII but for the characters it escapes ('"', '\\', and '<',
// '>', '&' for HTML).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

func decodePayload(id string, p []byte) (notifier.Notice, error) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return notifier.Notice{}, fmt.Errorf("notice %s: no header line: %w", id, errCorrupt)
	}
	var h payloadHeader
	if err := json.Unmarshal(p[:i], &h); err != nil {
		return notifier.Notice{}, fmt.Errorf("notice %s: header: %v: %w", id, err, errCorrupt)
	}
	n := notifier.Notice{
		ID: id, URL: h.URL, Header: h.Header, Stamp: time.UnixMilli(h.Stamp),
		Body:     p[i+1:],
		Schedule: make(backoff.Schedule, len(h.Schedule)),
	}
	for i, ms := range h.Schedule {
		n.Schedule[i] = time.Duration(ms) * time.Millisecond
	}
	n.Partner, n.Trace = h.Partner, h.Trace
	if h.Success != "" {
		r, err := notifier.ParseSuccessRule(h.Success)
		if err != nil {
			return notifier.Notice{}, fmt.Errorf("notice %s: %v: %w", id, err, errCorrupt)
		}
		n.Success = r
	}
	for _, k := range h.Secrets {
		sec, err := notifier.ParseSecret(k)
		if err != nil {
			return notifier.Notice{}, fmt.Errorf("notice %s: a secret does not parse: %w", id, errCorrupt)
		}
		n.Secrets = append(n.Secrets, sec)
	}
	if err := n.ValidateStored(); err != nil {
		return notifier.Notice{}, fmt.Errorf("notice %s: %v: %w", id, err, errCorrupt)
	}
	return n, nil
}

// decodeHeader decodes a payload's header line, head (with its '\n', as
// readHeads returns it): the notice without its body.
func decodeHeader(id string, head []byte) (notifier.Notice, error) {
	n, err := decodePayload(id, head)
	n.Body = nil
	return n, err
}
