package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
)

// TestAdminReadsSkipBodies: with 200 notices of 1 MiB pending, four
// concurrent loads of the console's notices list and a `notifier list -n 1`
// read headers, not bodies: serve's memory grows by far less than the
// bodies, `list` stays small, and notices due meanwhile are delivered on
// time (the admin reads have their own Redis connections).
func TestAdminReadsSkipBodies(t *testing.T) {
	const (
		notices  = 200
		bodySize = notifier.MaxBodyBytes
		maxGrow  = 100 << 20 // bytes: half the bodies' total
		maxLate  = time.Second
	)
	ctx := context.Background()
	srv := redistest.Start(t, "appendonly no") // 200 MiB need not be written to disk
	rdb := srv.Client()
	partnerSrv, _ := partner(t, 0, 0)

	q := store.NewRedis(rdb, "", nil)
	body := bytes.Repeat([]byte("x"), bodySize)
	stamp := time.Now().Truncate(time.Millisecond)
	// One at a time, so this process stays small: see listRSS below.
	for i := range notices {
		n := notifier.Notice{ID: fmt.Sprintf("big-%03d", i), URL: partnerSrv.URL + "/big", Body: body,
			Schedule: backoff.Schedule{time.Hour}, Stamp: stamp}
		if errs, err := q.Enqueue(ctx, []notifier.Notice{n}); err != nil || errs[0] != nil {
			t.Fatalf("enqueue %s: %v %v", n.ID, err, errs)
		}
	}

	db := filepath.Join(t.TempDir(), "attempts.db")
	s := spawnServe(t, "--redis", srv.URL(), "--db", db, "--allow-private", "--listen", "127.0.0.1:0", "--api-token", consoleToken)
	t.Cleanup(s.stop)
	s.waitSubscribed(rdb, 1)
	base := "http://" + waitLog(t, s.logs, regexp.MustCompile(`msg="api listening" addr=(\S+)`))
	jar, _ := cookiejar.New(nil)
	web := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := web.PostForm(base+"/ui/login", url.Values{"token": {consoleToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d, want 303", resp.StatusCode)
	}

	pid := s.cmd.Process.Pid
	before := procKiB(t, pid, "VmRSS")

	// Notices due while the admin reads run: each must go out on time.
	dues := []time.Duration{0, 200 * time.Millisecond, 500 * time.Millisecond, time.Second}
	now := time.Now().Truncate(time.Millisecond)
	for i, d := range dues {
		n := notifier.Notice{ID: fmt.Sprintf("due-%d", i), URL: partnerSrv.URL + "/due", Body: []byte(`{}`),
			Schedule: backoff.Schedule{d}, Stamp: now}
		if errs, err := q.Enqueue(ctx, []notifier.Notice{n}); err != nil || errs[0] != nil {
			t.Fatalf("enqueue %s: %v %v", n.ID, err, errs)
		}
	}

	var wg sync.WaitGroup
	pages := make([]string, 4)
	codes := make([]int, 4)
	for i := range pages {
		wg.Go(func() {
			resp, err := web.Get(base + "/ui/")
			if err != nil {
				t.Errorf("console page %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			pages[i], codes[i] = string(b), resp.StatusCode
		})
	}
	var listOut bytes.Buffer
	var listRSS int64
	wg.Go(func() {
		cmd := exec.Command(binary, "list", "--redis", srv.URL(), "-n", "1")
		cmd.Stdout, cmd.Stderr = &listOut, &listOut
		if err := cmd.Run(); err != nil {
			t.Errorf("list -n 1: %v: %s", err, listOut.String())
			return
		}
		// KiB on Linux. A child started with vfork, as os/exec does, also
		// counts this process's peak RSS (see listLimit below).
		listRSS = cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	})
	wg.Wait()
	peak := procKiB(t, pid, "VmHWM")

	for i, p := range pages {
		if codes[i] != http.StatusOK || !strings.Contains(p, "big-") {
			t.Errorf("console page %d: %d, want 200 listing the big notices:\n%.300s", i, codes[i], p)
		}
	}
	if lines := strings.Split(strings.TrimSpace(listOut.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "big-") {
		t.Errorf("list -n 1 printed %q, want the header and one pending notice", listOut.String())
	}
	grow := (peak - before) << 10
	// list's max RSS is at least this process's peak (which the race
	// detector inflates): allow for that, still far below the bodies.
	self := procKiB(t, os.Getpid(), "VmHWM") << 10
	listLimit := max(maxGrow, self+16<<20)
	t.Logf("serve RSS %d MiB before the reads, peak %d MiB (+%d MiB; bodies total %d MiB); list -n 1 max RSS %d MiB (this test's peak: %d MiB)",
		before>>10, peak>>10, grow>>20, notices*bodySize>>20, listRSS>>10, self>>20)
	if grow > maxGrow {
		t.Errorf("serve's RSS grew by %d MiB while the console listed notices, want under %d MiB: it read the bodies", grow>>20, maxGrow>>20)
	}
	if listRSS<<10 > listLimit {
		t.Errorf("list -n 1 used %d MiB, want under %d MiB: it read the bodies", listRSS>>10, listLimit>>20)
	}

	late := map[string]time.Duration{}
	for _, a := range waitRows(t, db, len(dues)) {
		late[a.NoticeID] = a.Lateness()
	}
	for i := range dues {
		id := fmt.Sprintf("due-%d", i)
		l, ok := late[id]
		t.Logf("%s delivered %v late", id, l)
		if !ok || l > maxLate {
			t.Errorf("%s: delivered %v late (logged: %v), want under %v while admins read", id, l, ok, maxLate)
		}
	}
}

// procKiB reads a field in kB (VmRSS, VmHWM) of /proc/<pid>/status.
func procKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s in /proc/%d/status: %v", field, pid, err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
