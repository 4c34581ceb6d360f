package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifier/notifier/store/redistest"
)

// TestTwoServesOnACluster: two serve processes on a real three-master Redis
// Cluster (redis+cluster:// seeds) make every attempt of notices spread over
// all masters exactly once, and `tail --fleet` shows both serves' attempts.
func TestTwoServesOnACluster(t *testing.T) {
	const total = 400
	c := redistest.StartCluster(t, 3, 1)
	url := "redis+cluster://" + strings.Join(c.Addrs(), ",")
	var mu sync.Mutex
	posts := map[string]int{}
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := r.Header.Get("Notice-Attempt")
		mu.Lock()
		posts[r.Header.Get("Webhook-Id")+"#"+n]++
		mu.Unlock()
		if n == "1" {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer partner.Close()
	dir := t.TempDir()
	var serves []*serveProc
	for i := range 2 {
		s := spawnServe(t, "--redis", url, "--db", filepath.Join(dir, fmt.Sprintf("a%d.db", i)), "--allow-private", "--fleet-log",
			"--timeout", "2s", "--lease", "4s", "--concurrency", "64")
		t.Cleanup(s.stop)
		waitLog(t, s.logs, regexp.MustCompile(`msg=(serving)`))
		serves = append(serves, s)
	}
	var lines strings.Builder
	for i := range total {
		fmt.Fprintf(&lines, `{"id":"k%d","url":"%s/n","schedule":"0,1s"}`+"\n", i, partner.URL)
	}
	if code, out, errOut := runCLI(t, lines.String(), "enqueue", "--redis", url, "--file", "-"); code != 0 {
		t.Fatalf("enqueue = %d %q %q", code, out, errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(posts)
		mu.Unlock()
		if n == 2*total {
			break
		}
		if time.Now().After(deadline) {
			for _, s := range serves {
				t.Logf("serve log:\n%s", tailLines(s.logs.String(), 15))
			}
			t.Fatalf("%d of %d attempts made", n, 2*total)
		}
		time.Sleep(20 * time.Millisecond) // the partner's own count
	}
	mu.Lock()
	for k, v := range posts {
		if v != 1 {
			t.Errorf("%s POSTed %d times, want once", k, v)
		}
	}
	mu.Unlock()
	// Both serves' attempts are in the fleet stream.
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, out, _ = runCLI(t, "", "tail", "--fleet", "--redis", url, "-n", "2000")
		if strings.Count(out, "\n") >= 2*total || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // appends are batched in the serves
	}
	hosts := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		hosts[strings.Fields(line)[0]] = true
	}
	if n := strings.Count(out, "\n"); n != 2*total || len(hosts) != 2 {
		t.Errorf("tail --fleet printed %d attempts from %d serves, want %d from 2", n, len(hosts), 2*total)
	}
}
