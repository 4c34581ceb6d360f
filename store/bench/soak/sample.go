package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/notifier/notifier/store/bench/procfs"
)

// figure is one column of the table: a name, how to read it from a sample,
// and how to print it.
type figure struct {
	name  string
	get   func(sample) float64
	bytes bool
}

// sample is what one look at serve gives.
type sample struct {
	at                   time.Duration
	sent, failed, behind int64
	delivered, attempts  float64
	usedMemory, keys     float64
	pending, fleet       float64
	dbBytes, walBytes    float64
	rss, redisRSS        float64
	goroutines, fds      float64
	metrics              metrics // the whole scrape, for the summary
}

var figures = []figure{
	{"redis_mem", func(s sample) float64 { return s.usedMemory }, true},
	{"redis_keys", func(s sample) float64 { return s.keys }, false},
	{"pending", func(s sample) float64 { return s.pending }, false},
	{"db", func(s sample) float64 { return s.dbBytes }, true},
	{"wal", func(s sample) float64 { return s.walBytes }, true},
	{"serve_rss", func(s sample) float64 { return s.rss }, true},
	{"redis_rss", func(s sample) float64 { return s.redisRSS }, true},
	{"goroutines", func(s sample) float64 { return s.goroutines }, false},
	{"open_files", func(s sample) float64 { return s.fds }, false},
}

// sampler reads serve's /metrics and /proc every period and keeps the
// samples for the summary.
type sampler struct {
	base    string
	pid     int
	out     io.Writer
	warm    time.Duration
	samples []sample
}

func (s *sampler) header() {
	fmt.Fprintf(s.out, "%8s %9s %7s %10s", "elapsed", "enqueued", "rate/s", "delivered")
	for _, f := range figures {
		fmt.Fprintf(s.out, " %11s", f.name)
	}
	fmt.Fprintln(s.out)
}

// sample reads one sample and prints its row.
func (s *sampler) sample(at time.Duration, l *load) error {
	m, err := scrape(s.base + "/metrics")
	if err != nil {
		return err
	}
	x := sample{at: at, sent: l.sent.Load(), failed: l.failed.Load(), behind: l.behind.Load(),
		delivered: m.sum("notifier_deliveries_total"), attempts: m.sum("notifier_attempts_total"),
		usedMemory: m["notifier_redis_used_memory_bytes"], keys: m["notifier_redis_keys"],
		pending: m[`notifier_redis_entries{kind="pending"}`], fleet: m[`notifier_redis_entries{kind="fleet_stream"}`],
		dbBytes: m[`notifier_attempt_log_bytes{file="db"}`], walBytes: m[`notifier_attempt_log_bytes{file="wal"}`],
		goroutines: m["go_goroutines"], metrics: m,
	}
	x.rss = rss(s.pid)
	x.fds = openFiles(s.pid)
	if child := childPID(s.pid); child > 0 {
		x.redisRSS = rss(child)
	}
	// The rate since the previous sample: on a busy machine the load
	// may fall short of -rate, and every figure follows it.
	rate := float64(x.sent) / at.Seconds()
	if n := len(s.samples); n > 0 {
		p := s.samples[n-1]
		rate = float64(x.sent-p.sent) / (at - p.at).Seconds()
	}
	s.samples = append(s.samples, x)
	fmt.Fprintf(s.out, "%8s %9d %7.0f %10.0f", at.Round(time.Second), x.sent, rate, x.delivered)
	for _, f := range figures {
		fmt.Fprintf(s.out, " %11s", format(f.get(x), f.bytes))
	}
	fmt.Fprintln(s.out)
	return nil
}

// summary prints each figure's growth per hour, fitted by least squares
// over the samples taken after warm, and what the load achieved.
func (s *sampler) summary(l *load) {
	var late []sample
	for _, x := range s.samples {
		if x.at >= s.warm {
			late = append(late, x)
		}
	}
	last := s.samples[len(s.samples)-1]
	fmt.Fprintf(s.out, "\nenqueued %d (%.0f/s), refused or failed %d, skipped for lack of senders %d; delivered %.0f, attempts %.0f\n",
		last.sent, float64(last.sent)/last.at.Seconds(), last.failed, last.behind, last.delivered, last.attempts)
	fmt.Fprintln(s.out, retentionSteps(last.metrics))
	if len(late) < 3 {
		fmt.Fprintf(s.out, "growth per hour: needs 3 samples after the first %s (the window, the receipts' minute, a retry); run longer\n", s.warm)
		return
	}
	fmt.Fprintf(s.out, "\ngrowth per hour, fitted over %d samples from %s on (after the first window):\n", len(late), late[0].at.Round(time.Second))
	fmt.Fprintf(s.out, "%-11s %12s %12s %10s\n", "figure", "mean", "per hour", "% of mean")
	for _, f := range figures {
		mean, slope := fit(late, f.get)
		pct := 0.0
		if mean != 0 {
			pct = 100 * slope / mean
		}
		fmt.Fprintf(s.out, "%-11s %12s %12s %9.1f%%\n", f.name, format(mean, f.bytes), signed(format(slope, f.bytes), slope), pct)
	}
}

// retentionSteps describes the histogram notifier_retention_step_seconds:
// how long attempt logging waited behind retention.
func retentionSteps(m metrics) string {
	const name = "notifier_retention_step_seconds"
	n := m[name+"_count"]
	if n == 0 {
		return "retention steps: none reported"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "retention steps: %.0f, mean %s;", n, time.Duration(m[name+"_sum"]/n*float64(time.Second)).Round(time.Microsecond))
	for _, le := range []string{"0.001", "0.005", "0.01", "0.025", "0.1"} {
		fmt.Fprintf(&b, " <=%sms %.1f%%", strings.TrimSuffix(strings.TrimSuffix(strconv.FormatFloat(mustFloat(le)*1000, 'f', 1, 64), "0"), "."),
			100*m[name+`_bucket{le="`+le+`"}`]/n)
	}
	return b.String()
}

func mustFloat(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// fit returns the mean of get over xs and its least-squares slope per hour.
func fit(xs []sample, get func(sample) float64) (mean, perHour float64) {
	var st, sy float64
	n := float64(len(xs))
	for _, x := range xs {
		st += x.at.Hours()
		sy += get(x)
	}
	mt, my := st/n, sy/n
	var num, den float64
	for _, x := range xs {
		dt := x.at.Hours() - mt
		num += dt * (get(x) - my)
		den += dt * dt
	}
	if den == 0 {
		return my, 0
	}
	return my, num / den
}

func signed(s string, v float64) string {
	if v >= 0 {
		return "+" + s
	}
	return s
}

// format prints v as bytes (KiB, MiB) or as a number.
func format(v float64, bytes bool) string {
	if !bytes {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a >= 1<<30:
		return fmt.Sprintf("%.2fG", v/(1<<30))
	case a >= 1<<20:
		return fmt.Sprintf("%.1fM", v/(1<<20))
	case a >= 1<<10:
		return fmt.Sprintf("%.0fK", v/(1<<10))
	}
	return fmt.Sprintf("%.0fB", v)
}

// metrics maps a series (name and labels as printed) to its value.
type metrics map[string]float64

// sum adds every series of the metric name.
func (m metrics) sum(name string) float64 {
	var t float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}

// scrape reads the Prometheus text at url.
func scrape(url string) (metrics, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// rss is the resident set of process pid in bytes (0 if gone).
func rss(pid int) float64 { return float64(procfs.StatusBytes(pid, "VmRSS")) }

// openFiles counts the open file descriptors of process pid.
func openFiles(pid int) float64 {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return float64(len(es))
}

// childPID is the first child of process pid (serve's embedded
// redis-server), or 0. Each thread lists the children it started, so every
// thread of serve is read.
func childPID(pid int) int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	return 0
}
