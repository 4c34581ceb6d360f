package notifier_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
)

// sendOneAlert makes an Alerter for url checked by guard send one alert and
// returns how many it sent and what it logged.
func sendOneAlert(t *testing.T, url string, guard *notifier.Guard) (sent int64, logged string) {
	t.Helper()
	var buf bytes.Buffer
	al := notifier.NewAlerter(url, 5*time.Second, guard, slog.New(slog.NewTextHandler(&buf, nil)))
	al.Notify(notifier.Attempt{NoticeID: "gone-1", URL: "http://partner.example/n", N: 3, Status: 500, Outcome: notifier.GaveUp})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run sends what is queued, then returns
	if err := al.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return al.Sent(), buf.String()
}

// recorder is a test server that counts the requests it gets.
func recorder(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestAlerterGoesThroughTheGuard: alerts are dialled through the SSRF guard
// serve gives the deliverer, so a loopback alert URL is refused unless the
// guard allows it (--allow-private, --allow-cidr).
func TestAlerterGoesThroughTheGuard(t *testing.T) {
	tests := []struct {
		name      string
		guard     *notifier.Guard
		delivered bool
	}{
		{"BlocksLoopback", &notifier.Guard{}, false},
		{"AllowPrivateDelivers", &notifier.Guard{AllowPrivate: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			receiver, got := recorder(t)
			sent, logged := sendOneAlert(t, receiver.URL+"/alerts", tt.guard)
			if tt.delivered {
				if sent != 1 || got.Load() != 1 {
					t.Fatalf("sent %d, receiver got %d, want 1 and 1; log:\n%s", sent, got.Load(), logged)
				}
				return
			}
			if sent != 0 || got.Load() != 0 {
				t.Fatalf("sent %d, receiver got %d, want 0 and 0: the guard should refuse loopback", sent, got.Load())
			}
			if !strings.Contains(logged, "address blocked (loopback)") {
				t.Errorf("log %q, want it to say the address was blocked (loopback)", logged)
			}
		})
	}
}

// TestAlerterIgnoresProxyEnvironment: HTTP_PROXY does not route alerts
// around the guard. The alert URL is in a documentation range (192.0.2.0/24)
// that the guard refuses before connecting, so nothing leaves the host; a
// transport that took the proxy from the environment would hand the request
// to the recording proxy instead. net/http reads the proxy variables once
// per process, so the Alerter runs in a child process started with them set.
func TestAlerterIgnoresProxyEnvironment(t *testing.T) {
	if os.Getenv(proxyChildEnv) != "" {
		sent, logged := sendOneAlert(t, "http://192.0.2.1:9/alerts", &notifier.Guard{})
		if sent != 0 || !strings.Contains(logged, "address blocked (documentation)") {
			t.Fatalf("sent %d, log %q; want the guard to refuse the address", sent, logged)
		}
		return
	}
	proxy, proxied := recorder(t)
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		t.Setenv(k, proxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	t.Setenv(proxyChildEnv, "1")
	out, err := exec.Command(os.Args[0], "-test.run=^TestAlerterIgnoresProxyEnvironment$", "-test.count=1", "-test.v").CombinedOutput()
	if n := proxied.Load(); n != 0 {
		t.Fatalf("the proxy from HTTP_PROXY got %d requests, want 0", n)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// proxyChildEnv marks the child process of TestAlerterIgnoresProxyEnvironment.
const proxyChildEnv = "NOTIFIER_TEST_ALERT_PROXY_CHILD"
