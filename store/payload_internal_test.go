package store

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// TestPlainPayloadIsWhatJSONWrites: the hand-written payload of a common
// notice has the bytes json.Marshal gives it, and every notice it does not
// take goes the json.Marshal way.
func TestPlainPayloadIsWhatJSONWrites(t *testing.T) {
	stamp := time.UnixMilli(1796483042139)
	rule, err := notifier.ParseSuccessRule("status:200,204")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		n     notifier.Notice
		plain bool
	}{
		{"Plain", notifier.Notice{ID: "a", URL: "http://127.0.0.1:9/x?a=1#f", Body: []byte(`{"a":1}`), Schedule: backoff.Default, Stamp: stamp}, true},
		{"NoBodyOneSlot", notifier.Notice{ID: "a", URL: "https://p.example/", Schedule: backoff.Schedule{86400 * time.Second}, Stamp: stamp}, true},
		{"EmptySchedule", notifier.Notice{ID: "a", URL: "https://p.example/", Schedule: backoff.Schedule{}, Stamp: stamp}, true},
		{"SubMillisecondOffsets", notifier.Notice{ID: "a", URL: "https://p.example/", Schedule: backoff.Schedule{1500 * time.Microsecond}, Stamp: stamp}, true},
		{"Partner", notifier.Notice{ID: "a", URL: "https://p.example/", Partner: "bank-c", Schedule: backoff.Default, Stamp: stamp}, true},
		{"URLWithAmpersand", notifier.Notice{ID: "a", URL: "https://p.example/?a=1&b=<2>", Schedule: backoff.Default, Stamp: stamp}, false},
		{"URLWithQuote", notifier.Notice{ID: "a", URL: `https://p.example/"x\y`, Schedule: backoff.Default, Stamp: stamp}, false},
		{"URLNonASCII", notifier.Notice{ID: "a", URL: "https://p.example/é", Schedule: backoff.Default, Stamp: stamp}, false},
		{"Header", notifier.Notice{ID: "a", URL: "https://p.example/", Header: http.Header{"X-A": {"1"}}, Schedule: backoff.Default, Stamp: stamp}, false},
		{"EmptyHeader", notifier.Notice{ID: "a", URL: "https://p.example/", Header: http.Header{}, Schedule: backoff.Default, Stamp: stamp}, true},
		{"Success", notifier.Notice{ID: "a", URL: "https://p.example/", Success: rule, Schedule: backoff.Default, Stamp: stamp}, false},
		{"Trace", notifier.Notice{ID: "a", URL: "https://p.example/", Trace: "00-x-y-01", Schedule: backoff.Default, Stamp: stamp}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := payloadHeader{URL: tc.n.URL, Header: tc.n.Header, Stamp: tc.n.Stamp.UnixMilli(), Partner: tc.n.Partner, Trace: tc.n.Trace}
			if !tc.n.Success.IsZero() {
				h.Success = tc.n.Success.String()
			}
			h.Schedule = make([]int64, len(tc.n.Schedule))
			for i, d := range tc.n.Schedule {
				h.Schedule[i] = d.Milliseconds()
			}
			line, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			want := append(append(line, '\n'), tc.n.Body...)
			got, plain := appendPlainPayload(&tc.n)
			if plain != tc.plain {
				t.Fatalf("plain = %v, want %v", plain, tc.plain)
			}
			if plain && !bytes.Equal(got, want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
			enc, err := encodePayload(&tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, want) {
				t.Errorf("encodePayload gives %s\nwant %s", enc, want)
			}
		})
	}
}
