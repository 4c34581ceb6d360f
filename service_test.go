package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store/redistest"
)

// TestSSRFGuardEndToEnd: serve without --allow-private refuses internal
// partners: IP literals in any spelling at enqueue, a name that resolves to
// loopback at dial time (logged as blocked, not retried), and a redirect
// towards the cloud metadata address is never followed.
func TestSSRFGuardEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	var hits atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer internal.Close()
	db := filepath.Join(t.TempDir(), "attempts.db")
	startServe(t, rdb, "--redis", srv.URL(), "--db", db, "--max-body", "1000")
	port := internal.URL[strings.LastIndexByte(internal.URL, ':')+1:]

	// The body limit serve publishes applies at enqueue.
	code, _, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", "http://example.com/x", "-d", strings.Repeat("x", 1001))
	if code != exitBadInput || !strings.Contains(errOut, "at most 1000") {
		t.Errorf("enqueue of 1001 bytes under --max-body 1000 = %d %q", code, errOut)
	}

	for _, host := range []string{"127.0.0.1", "127.1", "0x7f000001", "2130706433", "[::ffff:169.254.169.254]", "169.254.169.254", "10.0.0.1", "[::1]"} {
		code, _, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", "http://"+host+":"+port+"/x")
		if code != exitBadInput {
			t.Errorf("enqueue to %s = %d %q, want refused with exit 2", host, code, errOut)
		}
	}
	// A name is only resolved when serve dials it: refused there, logged
	// as blocked, and not retried.
	code, _, errOut = runCLI(t, "", "enqueue", "--redis", srv.URL(), "--id", "rebind", "--schedule", "0,100ms,200ms",
		"--url", "http://localhost:"+port+"/x")
	if code != 0 {
		t.Fatalf("enqueue to localhost = %d %q", code, errOut)
	}
	rows := waitRows(t, db, 1)
	if rows[0].Outcome != notifier.Blocked || !strings.Contains(rows[0].Error, "address blocked") {
		t.Errorf("attempt to a name resolving to loopback: %s %q", rows[0].Outcome, rows[0].Error)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the internal server got %d requests", n)
	}
	if left := pendingKeys(t, rdb); len(left) != 0 {
		t.Errorf("a blocked notice is still pending: %v", left)
	}
}

// TestAPIAndMetricsEndToEnd: serve --listen answers the HTTP API with the
// bearer token, delivers what it accepts, and its /metrics counters, parsed
// with the Prometheus text parser, match the attempt log.
func TestAPIAndMetricsEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Notice-Attempt") == "1" {
			w.WriteHeader(http.StatusServiceUnavailable) // every first attempt fails
		}
	}))
	defer partner.Close()
	db := filepath.Join(t.TempDir(), "attempts.db")
	const token = "test-token-0123456789"
	logs := startServe(t, rdb, "--redis", srv.URL(), "--db", db, "--allow-private", "--listen", "127.0.0.1:0", "--api-token", token)
	addr := waitLog(t, logs, regexp.MustCompile(`msg="api listening" addr=(\S+)`))
	base := "http://" + addr

	call := func(method, path, body, tok string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := call("GET", "/healthz", "", ""); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := call("GET", "/readyz", "", ""); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, _ := call("POST", "/v1/notices", `{"id":"a1","url":"`+partner.URL+`/n"}`, ""); code != http.StatusUnauthorized {
		t.Errorf("POST without token = %d", code)
	}
	for i := range 3 {
		body := fmt.Sprintf(`{"id":"api-%d","url":"%s/n","body":{"k":%d},"schedule":"0,200ms"}`, i, partner.URL, i)
		if code, resp := call("POST", "/v1/notices", body, token); code != http.StatusCreated {
			t.Fatalf("POST = %d %s", code, resp)
		}
	}
	if code, _ := call("POST", "/v1/notices", `{"id":"api-0","url":"`+partner.URL+`/n"}`, token); code != http.StatusConflict {
		t.Errorf("duplicate POST = %d, want 409", code)
	}
	if code, body := call("POST", "/v1/notices", `{"url":"ftp://x"}`, token); code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
		t.Errorf("bad POST = %d %s", code, body)
	}
	rows := waitRows(t, db, 6)
	code, body := call("GET", "/v1/notices/api-1", "", token)
	var got struct {
		Status   notifier.Status        `json:"status"`
		Attempts []notifier.AttemptJSON `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || got.Status.State != notifier.StateDelivered || len(got.Attempts) != 2 {
		t.Errorf("GET = %d %s (%v)", code, body, err)
	}

	code, body = call("GET", "/metrics", "", token)
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	byOutcome := map[string]float64{}
	for _, m := range families["notifier_attempts_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" {
				byOutcome[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{}
	for _, r := range rows {
		want[string(r.Outcome)]++
	}
	for o, v := range want {
		if byOutcome[o] != v {
			t.Errorf("notifier_attempts_total{outcome=%q} = %v, the log has %v", o, byOutcome[o], v)
		}
	}
	if h := families["notifier_attempt_lateness_seconds"].GetMetric(); len(h) != 1 || h[0].GetHistogram().GetSampleCount() != uint64(len(rows)) {
		t.Errorf("lateness histogram holds %v samples, want %d", h, len(rows))
	}
	if g := families["notifier_pending_notices"].GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != 0 {
		t.Errorf("pending gauge %v, want 0", g)
	}
	// serve's own GOGC (serveGCPercent) unless the environment names one.
	wantGC := float64(serveGCPercent)
	if v, ok := os.LookupEnv("GOGC"); ok {
		// As the runtime reads it: "off" is -1, anything else unparsable 100.
		wantGC = 100
		if n, err := strconv.Atoi(v); err == nil {
			wantGC = float64(n)
		} else if v == "off" {
			wantGC = -1
		}
	}
	if g := families["go_gc_gogc_percent"].GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != wantGC {
		t.Errorf("go_gc_gogc_percent %v, want %v", g, wantGC)
	}
}

// waitLog waits until serve's log matches re and returns the first group.
func waitLog(t *testing.T, logs *syncBuffer, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		time.Sleep(5 * time.Millisecond) // the log is the only signal a child process gives
	}
	t.Fatalf("serve never logged %s", re)
	return ""
}

// TestEmbeddedFilesArePrivate: serve's data dir is 0700 and every file it
// or its redis-server writes there (SQLite, AOF, socket, log) is readable by
// its user only.
func TestEmbeddedFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := spawnServe(t, "--data-dir", dir)
	waitLog(t, s.logs, regexp.MustCompile(`msg=(serving)`))
	// Stopping first: redis-server writes its AOF while it runs.
	s.stop()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
	var files int
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: group or others may read it", path, info.Mode().Perm())
		}
		if !d.IsDir() {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 { // attempts.db and the AOF at least
		t.Errorf("only %d files in the data dir", files)
	}
}
