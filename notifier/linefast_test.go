package notifier

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// fastLineSeeds are lines in and around the shape lineDecoder.fast takes.
var fastLineSeeds = []string{
	`{"id":"n1","url":"https://partner.example/hook","body":{"a":1},"schedule":"86400"}`,
	`{"id":"n1","url":"https://partner.example/hook","body":"plain text","partner":"p","success":"2xx"}`,
	`{ "id" : "n1" , "url" : "http://p.example/" , "body" : [ 1 , -2.5e+3 , true , false , null , "\u00e9\n" , { } , [ ] ] }`,
	"{\t\"url\":\"http://p.example/\",\r\"body\":{\"k\":\"\xff\"}}",
	`{"url":"http://p.example/","body":null}`,
	`{"url":"http://p.example/","body":"a\"b"}`,
	`{"url":"http://p.example/","body":0}`,
	`{"url":"http://p.example/","body":-0.0E-0}`,
	`{}`,
	`{"url":"http://p.example/","body":01}`,
	`{"url":"http://p.example/","body":1.}`,
	`{"url":"http://p.example/","body":.5}`,
	`{"url":"http://p.example/","body":1e}`,
	`{"url":"http://p.example/","body":+1}`,
	`{"url":"http://p.example/","body":"\x"}`,
	`{"url":"http://p.example/","body":"\u12"}`,
	"{\"url\":\"http://p.example/\",\"body\":\"a\tb\"}",
	`{"url":"http://p.example/","body":tru}`,
	`{"url":"http://p.example/","body":{"a":1,}}`,
	`{"url":"http://p.example/","body":[1,]}`,
	`{"url":"http://p.example/","body":{"a"}}`,
	`{"url":"http://p.example/","body":{1:2}}`,
	`{"url":"http://p.example/","body":{"a":1}`,
	`{"url":"http://p.example/",}`,
	`{"url":"http://p.example/"}}`,
	`{"url":"http://p.example/"} `,
	`{"url":"http://p.example/"}x`,
	`{"URL":"http://p.example/"}`,
	`{"Id":"n1","url":"http://p.example/"}`,
	`{"id":"a","id":"b","url":"http://p.example/"}`,
	`{"id":null,"url":"http://p.example/"}`,
	`{"id":1,"url":"http://p.example/"}`,
	`{"id":"\u0061","url":"http://p.example/"}`,
	`{"id":"é","url":"http://p.example/"}`,
	`{"url":"http://p.example/","headers":{"X-A":"1"}}`,
	`{"url":"http://p.example/","secrets":[]}`,
	`{"url":"http://p.example/","extra":1}`,
	`{"url":"http://p.example/","body":` + strings.Repeat("[", 150) + strings.Repeat("]", 150) + `}`,
	`{"url":"http://p.example/","body":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`,
	`[]`,
	`null`,
	`{`,
	`{"url"`,
	`{"url":`,
	`{"url":"http`,
}

// checkFastLine fails t if fast takes text but encoding/json does not, or
// decodes it to a different Line.
func checkFastLine(t *testing.T, text []byte) {
	t.Helper()
	var fast Line
	if !(&lineDecoder{}).fast(text, &fast) {
		return
	}
	var slow Line
	if err := decodeJSON(text, &slow); err != nil {
		t.Fatalf("%q: fast took it, encoding/json says %v", text, err)
	}
	if len(fast.Body) == 0 && len(slow.Body) == 0 {
		fast.Body, slow.Body = nil, nil
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: fast gives %+v, encoding/json %+v", text, fast, slow)
	}
}

func TestFastLineDecodesAsEncodingJSONDoes(t *testing.T) {
	took := 0
	for _, seed := range fastLineSeeds {
		checkFastLine(t, []byte(seed))
		var l Line
		if (&lineDecoder{}).fast([]byte(seed), &l) {
			took++
		}
	}
	if took < 8 {
		t.Errorf("fast took %d of the seeds, want the common shapes (at least 8)", took)
	}
	t.Run("TakesTheCommonShape", func(t *testing.T) {
		var l Line
		if !(&lineDecoder{}).fast([]byte(fastLineSeeds[0]), &l) {
			t.Fatalf("fast refused %s", fastLineSeeds[0])
		}
		if got, want := string(l.Body), `{"a":1}`; got != want {
			t.Errorf("body %s, want %s", got, want)
		}
	})
	t.Run("SharesRepeatedURLs", func(t *testing.T) {
		d := &lineDecoder{}
		var a, b Line
		if !d.fast([]byte(`{"url":"http://p.example/x"}`), &a) || !d.fast([]byte(`{"url":"http://p.example/x"}`), &b) {
			t.Fatal("fast refused a plain line")
		}
		if a.URL != "http://p.example/x" || unsafe.StringData(a.URL) != unsafe.StringData(b.URL) {
			t.Errorf("urls %q and %q are not one string", a.URL, b.URL)
		}
	})
}

// FuzzFastLine checks that the fast line decoder takes only lines that
// encoding/json decodes, and decodes them to the same Line.
func FuzzFastLine(f *testing.F) {
	for _, seed := range fastLineSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		text := bytes.TrimSpace(data)
		if len(text) == 0 || bytes.IndexByte(text, '\n') >= 0 {
			return
		}
		checkFastLine(t, text)
	})
}
