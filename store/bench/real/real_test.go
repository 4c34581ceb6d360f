package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestBodyIsValidJSONOfExactlyItsSize(t *testing.T) {
	for _, size := range []int{32, 200, 4096} {
		b := body(12345, size)
		if len(b) != size {
			t.Errorf("body(12345, %d) is %d bytes", size, len(b))
		}
		var v struct{ Order int }
		if err := json.Unmarshal([]byte(b), &v); err != nil || v.Order != 12345 {
			t.Errorf("body(12345, %d) = %q: %v, order %d", size, b, err, v.Order)
		}
	}
}

func TestParseConfig(t *testing.T) {
	t.Run("Defaults", func(t *testing.T) {
		c, err := parseConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.throughput != 20000 || c.due != 10000 || c.rate != 1000 || len(c.pending) != 3 || c.pending[2] != 1000000 ||
			!c.rewrite || !c.wakerOff || !c.floors {
			t.Errorf("got %+v", c)
		}
	})
	t.Run("ScenariosCanBeSkipped", func(t *testing.T) {
		t.Setenv("BENCH_AOF_REWRITE", "0")
		t.Setenv("BENCH_FLOORS", "0")
		c, err := parseConfig([]string{"--waker-off=false"})
		if err != nil || c.rewrite || c.wakerOff || c.floors {
			t.Errorf("got %+v, %v", c, err)
		}
	})
	t.Run("EnvironmentSetsSizes", func(t *testing.T) {
		t.Setenv("BENCH_PENDING", "0,5000")
		t.Setenv("BENCH_THROUGHPUT", "300")
		c, err := parseConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.throughput != 300 || len(c.pending) != 2 || c.pending[1] != 5000 {
			t.Errorf("got %+v", c)
		}
	})
	t.Run("ServeEnvIsRepeatable", func(t *testing.T) {
		c, err := parseConfig([]string{"--serve-env", "GOGC=100", "--serve-env", "GOMEMLIMIT=1GiB"})
		if err != nil || strings.Join(c.serveEnv, " ") != "GOGC=100 GOMEMLIMIT=1GiB" {
			t.Errorf("got %q, %v", c.serveEnv, err)
		}
	})
	t.Run("EmptyPendingSkipsLateness", func(t *testing.T) {
		c, err := parseConfig([]string{"--pending", ""})
		if err != nil || len(c.pending) != 0 {
			t.Errorf("got %v, %v", c.pending, err)
		}
	})
	for _, args := range [][]string{{"--pending", "0,x"}, {"--due", "0"}, {"--body", "10"}, {"--rate", "-1"}, {"stray"},
		{"--peer", "bin/p", "--throughput", "0"}, {"--serve-env", "GOGC"}, {"--serve-env", "=1"}} {
		if _, err := parseConfig(args); err == nil {
			t.Errorf("parseConfig(%q) accepted", args)
		}
	}
	t.Run("BadEnvironmentIsRefused", func(t *testing.T) {
		t.Setenv("BENCH_DUE", "many")
		if _, err := parseConfig(nil); err == nil {
			t.Error("BENCH_DUE=many accepted")
		}
	})
}

func TestPartnerRefusesFirstAttemptOfRetryNotices(t *testing.T) {
	srv := httptest.NewServer(&partnerServer{})
	defer srv.Close()
	post := func(id string, n string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/notify", strings.NewReader("{}"))
		req.Header.Set("Webhook-Id", id)
		req.Header.Set("Notice-Attempt", n)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(retryPrefix+"a", "1"); got != http.StatusServiceUnavailable {
		t.Errorf("first attempt of a retry notice: got %d, want 503", got)
	}
	if got := post(retryPrefix+"a", "2"); got != http.StatusOK {
		t.Errorf("second attempt: got %d, want 200", got)
	}
	if got := post("tp-1", "1"); got != http.StatusOK {
		t.Errorf("first attempt of a throughput notice: got %d, want 200", got)
	}
	p := &partnerProc{base: srv.URL, http: srv.Client()}
	st, err := p.stats(t.Context())
	if err != nil || st.Arrived != 3 || st.LastNS < st.FirstNS || st.FirstNS == 0 {
		t.Errorf("stats: %+v, %v", st, err)
	}
	as, err := p.arrivals(t.Context())
	if err != nil || len(as) != 1 || as[0].ID != retryPrefix+"a" || as[0].N != 2 {
		t.Errorf("arrivals: %+v, %v (want the one retry)", as, err)
	}
	if err := p.reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, _ := p.stats(t.Context()); st.Arrived != 0 {
		t.Errorf("after reset: %+v", st)
	}
}

func TestCPUTimeCountsThisProcess(t *testing.T) {
	if cpuTime(0) != 0 {
		t.Error("pid 0 has CPU time")
	}
	before := cpuTime(os.Getpid())
	deadline := time.Now().Add(time.Minute)
	x := 0
	for cpuTime(os.Getpid()) < before+50*time.Millisecond {
		for i := range 1_000_000 {
			x += i
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %s after a minute of work", cpuTime(os.Getpid()))
		}
	}
	_ = x
}

func TestPerNotice(t *testing.T) {
	a := cpuSample{serve: time.Second, redis: time.Second, partner: time.Second}
	b := cpuSample{serve: 3 * time.Second, redis: 1500 * time.Millisecond, partner: 2 * time.Second}
	got := perNotice(a, b, 500*time.Millisecond, 10000)
	want := CPU{Serve: 200, Redis: 50, Partner: 100, Enqueue: 50, Total: 400}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestCommandCalls: the commands of INFO commandstats are summed but for
// the scripts themselves and INFO; other lines are skipped.
func TestCommandCalls(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_lpos:calls=120,usec=534,usec_per_call=4.45,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=24,usec=2971,usec_per_call=123.8,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_eval:calls=2,usec=10,usec_per_call=5,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=7,usec=70,usec_per_call=10,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=3,usec=3,usec_per_call=1,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_set:calls=80,usec=149,usec_per_call=1.86,rejected_calls=0,failed_calls=0\r\n" +
		"used_memory:123\r\n"
	if got := commandCalls(info); got != 120+3+80 {
		t.Errorf("commandCalls = %d, want %d", got, 120+3+80)
	}
	if got := commandsByName(info); got["lpos"] != 120 || got["client|setinfo"] != 3 || got["evalsha"] != 24 || len(got) != 6 {
		t.Errorf("commandsByName = %v", got)
	}
	if got := commandCalls(""); got != 0 {
		t.Errorf("commandCalls of nothing = %d, want 0", got)
	}
}
