package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRealPathBench runs the driver of `make bench` at small sizes: serve,
// the partner and enqueue as processes of their own. Every scenario must
// come out, every notice must reach the partner, and the figures must be
// there; their values are not asserted (speed is never asserted in tests).
func TestRealPathBench(t *testing.T) {
	driver := filepath.Join(t.TempDir(), "bench-real")
	build := exec.Command("go", "build", "-o", driver, "./store/bench/real")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the driver: %v\n%s", err, out)
	}
	cmd := exec.Command(driver, "--bin", binary, "--throughput", "300", "--due", "200", "--rate", "400",
		"--pending", "2000", "--body", "64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("driver: %v\n%s", err, stderr.String())
	}
	type cpu struct{ Serve, Redis, Partner, Enqueue, Total float64 }
	type line struct {
		Scenario, Tool, Path        string
		Waker                       *bool
		Pending, Notices, Delivered int
		NoticesPerSec               float64 `json:"notices_per_sec"`
		EnqueuePerSec               float64 `json:"enqueue_per_sec"`
		P99MS                       float64 `json:"p99_ms"`
		MaxMS                       float64 `json:"max_ms"`
		CPU                         *cpu    `json:"cpu_us_per_notice"`
		BytesPerPending             float64 `json:"bytes_per_pending"`
		BytesPerDelivered           float64 `json:"bytes_per_delivered"`
		AOFRewrites                 *int    `json:"aof_rewrites"`
		Cores                       int
	}
	var lines []line
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		lines = append(lines, line{})
		if err := json.Unmarshal(sc.Bytes(), &lines[len(lines)-1]); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
	}
	var got []string
	for _, l := range lines {
		name := l.Scenario
		if l.Waker != nil && l.Scenario == "lateness" {
			name += map[bool]string{true: "/wake", false: "/no-wake"}[*l.Waker]
		}
		got = append(got, name)
		// 300 lines cost the enqueue floor's Redis less than /proc's 10 ms
		// tick: its CPU may read 0.
		if l.Tool != "notifier" || l.Path != "real" || l.Cores < 1 || l.CPU == nil || (l.CPU.Total <= 0 && l.Scenario != "enqueue-floor") {
			t.Errorf("%s: tool %q, path %q, cores %d, cpu %+v", name, l.Tool, l.Path, l.Cores, l.CPU)
		}
		switch l.Scenario {
		case "throughput":
			if l.Delivered != 300 || l.NoticesPerSec <= 0 || l.EnqueuePerSec <= 0 || l.BytesPerDelivered <= 0 {
				t.Errorf("throughput: %+v", l)
			}
		case "http-floor":
			// Too few POSTs for each process's CPU to count in ticks on
			// a fast machine: store/bench/real's TestFloorsDoTheirWork
			// sends enough to check them.
			if l.Delivered != 300 || l.NoticesPerSec <= 0 || l.CPU.Redis != 0 || l.CPU.Enqueue != 0 {
				t.Errorf("http-floor: %+v", l)
			}
		case "enqueue-floor":
			if l.Delivered != 300 || l.EnqueuePerSec <= 0 || l.CPU.Total != l.CPU.Redis {
				t.Errorf("enqueue-floor: %+v", l)
			}
		case "lateness":
			// It starts once the AOF is rewritten, and 2,000 notices are
			// far from the next automatic rewrite.
			if l.Delivered != 200 || l.MaxMS <= 0 || l.P99MS > l.MaxMS || l.AOFRewrites == nil || *l.AOFRewrites != 0 {
				t.Errorf("lateness: %+v", l)
			}
		case "lateness-aof-rewrite":
			if l.Delivered != 200 || l.MaxMS <= 0 || l.P99MS > l.MaxMS || l.AOFRewrites == nil || *l.AOFRewrites != 1 {
				t.Errorf("lateness-aof-rewrite: %+v", l)
			}
		case "enqueue-backlog":
			if l.Notices != 2000 || l.Pending != 2000 || l.EnqueuePerSec <= 0 || l.BytesPerPending <= 0 {
				t.Errorf("enqueue-backlog: %+v", l)
			}
		}
	}
	// One backlog size is enough to check every kind of line (each
	// lateness scenario waits seconds for its retries, the sweep's longer).
	want := []string{"throughput", "http-floor", "enqueue-floor", "enqueue-backlog", "lateness/wake", "lateness-aof-rewrite", "enqueue-backlog", "lateness/no-wake"}
	if len(got) != len(want) {
		t.Fatalf("scenarios: got %v, want %v\n%s", got, want, stderr.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("scenarios: got %v, want %v", got, want)
		}
	}
}
