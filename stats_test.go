package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store/redistest"
)

// statsJSON runs `notifier stats --json` (or status without an id) and
// decodes what it prints.
func statsJSON(t *testing.T, cmd string, args ...string) notifier.StoreStats {
	t.Helper()
	code, out, errOut := runCLI(t, "", append([]string{cmd, "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("%s --json: exit %d: %s", cmd, code, errOut)
	}
	var st notifier.StoreStats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%s --json printed %q: %v", cmd, out, err)
	}
	return st
}

// metricValue returns the value of the sample whose name and labels are
// exactly series in the Prometheus text at base/metrics, and whether it is
// there.
func metricValue(t *testing.T, base, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// TestStatsThroughServe: `notifier stats` and `notifier status` without an
// id print what serve stores, /metrics exports the same gauges, and the
// fleet stream stays near --fleet-log-max however many attempts are made.
func TestStatsThroughServe(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	db := filepath.Join(t.TempDir(), "attempts.db")
	partnerURL := okPartner(t).URL + "/hook"
	logs := startServe(t, rdb, "--redis", srv.URL(), "--db", db, "--allow-private", "--listen", "127.0.0.1:0",
		"--api-token", "test-token-0123456789", "--public-metrics", "--fleet-log", "--fleet-log-max", "100")
	base := "http://" + waitLog(t, logs, regexp.MustCompile(`msg="api listening" addr=(\S+)`))
	target := []string{"--redis", srv.URL(), "--db", db}

	// 600 delivered at once, and 3 pending for an hour.
	enqueueBatch(t, srv.URL(), partnerURL, "now", 600, 10)
	later := `{"id":"later-%d","url":"` + partnerURL + `","schedule":"1h"}` + "\n"
	if code, _, errOut := runCLI(t, fmt.Sprintf(later+later+later, 1, 2, 3), append([]string{"enqueue", "--file", "-"}, target[:2]...)...); code != 0 {
		t.Fatalf("enqueue: %s", errOut)
	}
	waitRows(t, db, 600)

	t.Run("StatsPrintsWhatIsStored", func(t *testing.T) {
		// Completions, which remember delivered ids, may trail the log.
		st := statsJSON(t, "stats", target...)
		for deadline := time.Now().Add(30 * time.Second); st.Redis.DeliveredRemembered == nil || *st.Redis.DeliveredRemembered < 600; {
			if time.Now().After(deadline) {
				t.Fatalf("delivered ids remembered: %v, want 600", st.Redis.DeliveredRemembered)
			}
			time.Sleep(100 * time.Millisecond)
			st = statsJSON(t, "stats", target...)
		}
		if n := *st.Redis.DeliveredRemembered; n != 600 {
			t.Errorf("delivered ids remembered: %d, want 600", n)
		}
		if st.Redis.Pending != 3 || st.Redis.Parked != 0 || st.Redis.UsedMemory <= 0 || st.Redis.Keys < 6 {
			t.Errorf("redis: got %+v, want 3 pending, none parked, memory used, at least 6 keys (3 triggers, 3 payloads)", st.Redis)
		}
		if st.Log == nil || st.Log.FileBytes+st.Log.WALBytes == 0 || st.Log.Attempts < 600 ||
			time.Since(st.Log.OldestAttempt) > time.Minute || time.Since(st.Log.OldestArchived) > time.Minute {
			t.Errorf("attempt log: got %+v, want its size, 600 attempts or more, the oldest of this minute", st.Log)
		}
	})
	t.Run("FleetStreamStaysCapped", func(t *testing.T) {
		// XADD MAXLEN ~ trims whole nodes of the stream (100 entries
		// each), so it may hold a node more than asked.
		st := statsJSON(t, "stats", target...)
		if st.Redis.FleetStream == 0 || st.Redis.FleetStream > 200 {
			t.Errorf("fleet stream: %d entries after 600 attempts, want 1 to 200 (--fleet-log-max 100)", st.Redis.FleetStream)
		}
	})
	t.Run("StatusWithoutAnIDPrintsTheSame", func(t *testing.T) {
		st := statsJSON(t, "status", target...)
		if st.Redis.Pending != 3 || st.Log == nil {
			t.Errorf("status --json without an id: got %+v", st)
		}
		code, out, errOut := runCLI(t, "", append([]string{"status"}, target...)...)
		for _, want := range []string{"redis used_memory", "pending             3", "attempt log file", "oldest attempt"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("status without an id: exit %d, %q (%s), want a line with %q", code, out, errOut, want)
			}
		}
	})
	t.Run("MetricsExportTheGauges", func(t *testing.T) {
		// The gauges are read every 10 s, not per scrape.
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, ok := metricValue(t, base, `notifier_redis_entries{kind="pending"}`)
			dv, dok := metricValue(t, base, `notifier_redis_entries{kind="delivered"}`)
			if ok && v == 3 && dok && dv == 600 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf(`notifier_redis_entries: pending %v (present: %v), want 3; delivered %v (present: %v), want 600`, v, ok, dv, dok)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, series := range []string{"notifier_redis_used_memory_bytes", `notifier_attempt_log_bytes{file="db"}`,
			`notifier_attempt_log_oldest_age_seconds{table="attempts"}`, `notifier_attempt_log_oldest_age_seconds{table="archive"}`} {
			if v, ok := metricValue(t, base, series); !ok || v <= 0 {
				t.Errorf("%s: got %v (present: %v), want above 0", series, v, ok)
			}
		}
	})
}
