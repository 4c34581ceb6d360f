package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

func fullNotice(t testing.TB) notifier.Notice {
	sec, err := notifier.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	rule, err := notifier.ParseSuccessRule("body:success")
	if err != nil {
		t.Fatal(err)
	}
	return notifier.Notice{
		ID: "order-1", URL: "https://shop.example/notify?sig=1", Body: []byte("{\"a\":1}\n\x00\x01tail"),
		Header:   http.Header{"Authorization": {"Bearer x"}, "X-Multi": {"a", "b\x01c"}},
		Schedule: backoff.Schedule{0, 10 * time.Second, 300 * time.Second}, Stamp: time.UnixMilli(1764940000123),
		Partner: "shop", Success: rule, Secrets: []notifier.Secret{sec, sec}, Trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, n := range []notifier.Notice{
		fullNotice(t),
		{ID: "bare", URL: "http://127.0.0.1:8080/", Schedule: backoff.Schedule{0}, Stamp: time.UnixMilli(1)},
	} {
		p, err := encodePayload(&n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodePayload(n.ID, p)
		if err != nil {
			t.Fatalf("%s: %v", n.ID, err)
		}
		if len(n.Body) == 0 {
			n.Body = []byte{}
		}
		if got.Success.String() != n.Success.String() {
			t.Errorf("%s: success rule %q, want %q", n.ID, got.Success, n.Success)
		}
		got.Success, n.Success = notifier.SuccessRule{}, notifier.SuccessRule{}
		if !reflect.DeepEqual(got, n) {
			t.Errorf("%s: decoded\n%+v\nwant\n%+v", n.ID, got, n)
		}
		end, ok := headLen(p)
		if !ok || !bytes.Equal(p[end:], n.Body) {
			t.Errorf("%s: headLen = %d, %v; the body does not follow it", n.ID, end, ok)
		}
		again, _ := encodePayload(&n)
		n2 := n
		n2.Success = got.Success
		if p2, _ := encodePayload(&n2); !bytes.Equal(again, p2) {
			t.Errorf("%s: two encodings differ", n.ID)
		}
	}
}

// Payloads written by earlier releases (a JSON header line) still decode.
func TestPayloadLegacyForm(t *testing.T) {
	p := []byte(`{"u":"https://shop.example/n","h":{"X-Shop":["42"]},"s":[0,10000],"t":1764940000123,"p":"shop","r":"body:success"}` + "\n" + `{"a":1}`)
	n, err := decodePayload("old", p)
	if err != nil {
		t.Fatal(err)
	}
	if n.URL != "https://shop.example/n" || n.Header.Get("X-Shop") != "42" || len(n.Schedule) != 2 ||
		n.Schedule[1] != 10*time.Second || n.Stamp.UnixMilli() != 1764940000123 || n.Partner != "shop" ||
		n.Success.String() != "body:success" || string(n.Body) != `{"a":1}` {
		t.Fatalf("decoded %+v", n)
	}
	if end, ok := headLen(p); !ok || p[end-1] != '\n' {
		t.Fatalf("headLen = %d, %v", end, ok)
	}
}

// Every cut of a payload, and every single-byte change to its header,
// decodes or fails with errCorrupt: it never panics.
func TestPayloadCorrupt(t *testing.T) {
	n := fullNotice(t)
	p, err := encodePayload(&n)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := headLen(p)
	for i := range end {
		if _, err := decodePayload("x", p[:i]); !errors.Is(err, errCorrupt) {
			t.Fatalf("cut at %d: %v, want errCorrupt", i, err)
		}
	}
	for i := range end {
		for _, b := range []byte{0, 1, 0x7f, 0x80, 0xff} {
			q := bytes.Clone(p)
			q[i] = b
			if _, err := decodePayload("x", q); err != nil && !errors.Is(err, errCorrupt) {
				t.Fatalf("byte %d = %#x: %v, want errCorrupt", i, b, err)
			}
		}
	}
	for _, bad := range []string{"", "!cancelled", "not a payload", "\x01", "\x01\xff\xff\xff", "{no newline"} {
		if _, err := decodePayload("x", []byte(bad)); !errors.Is(err, errCorrupt) {
			t.Errorf("%q: %v, want errCorrupt", bad, err)
		}
	}
}

func FuzzDecodePayload(f *testing.F) {
	n := fullNotice(f)
	p, _ := encodePayload(&n)
	f.Add(p)
	f.Add([]byte(`{"u":"https://a.example/","s":[0],"t":1}` + "\nbody"))
	f.Fuzz(func(t *testing.T, p []byte) {
		n, err := decodePayload("x", p)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("%v, want errCorrupt", err)
			}
			return
		}
		q, err := encodePayload(&n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodePayload("x", q); err != nil {
			t.Fatalf("a decoded notice does not decode once encoded again: %v", err)
		}
	})
}

// TestRecordHashIsTheScriptsHash: the bucket hash the Go side passes to the
// hot scripts is the one the other scripts compute with rec_hash, for every
// kind of id; a notice stored under one and looked up under the other would
// be lost.
func TestRecordHashIsTheScriptsHash(t *testing.T) {
	r, _ := newDedupRedis(t)
	hashes := newScript(recordsLuaSrc + `
local out = {}
for k = 1, #ARGV do out[k] = string.format('%d', rec_hash(ARGV[k])) end
return out
`)
	ids := []string{"a", "order-1", "订单-0001", strings.Repeat("x", 300), "id with spaces", "~!@#$%^&*()"}
	for i := range 500 {
		ids = append(ids, fmt.Sprintf("pay_%d_%x", i, i*7919))
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	cmds, err := r.evalPipelined(context.Background(), []scriptCall{{hashes, []string{"k"}, args}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cmds[0].StringSlice()
	if err != nil || len(got) != len(ids) {
		t.Fatalf("reply %v, %v", got, err)
	}
	for i, id := range ids {
		if want := recordHash(id); got[i] != want {
			t.Errorf("id %q: rec_hash %s, recordHash %s", id, got[i], want)
		}
	}
}
