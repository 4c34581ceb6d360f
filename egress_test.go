package main

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/egresstest"
	"github.com/notifier/notifier/store/redistest"
)

// mtlsPartner is an HTTPS partner on 127.0.0.1 that requires a client
// certificate of clients and records the common name of each one it saw.
type mtlsPartner struct {
	*httptest.Server
	mu  sync.Mutex
	cns []string
}

func newMTLSPartner(t *testing.T, server, clients *egresstest.CA) *mtlsPartner {
	t.Helper()
	p := &mtlsPartner{}
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.cns = append(p.cns, r.TLS.PeerCertificates[0].Subject.CommonName)
		p.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	p.TLS = &tls.Config{Certificates: []tls.Certificate{server.Server(t, "127.0.0.1").TLS},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients.Pool()}
	p.StartTLS()
	t.Cleanup(p.Close)
	return p
}

func (p *mtlsPartner) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.cns...)
}

// TestEgressThroughTheBinary: serve sends a mutual-TLS partner's notices
// with the configured client certificate, through --egress-proxy (CONNECT,
// with the proxy's credentials, which are never logged), trusting the
// partner's private CA; warns at start of a certificate that ends within
// 14 days; picks up a rotated certificate without a restart; and reports
// certificate expiry in /metrics.
func TestEgressThroughTheBinary(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	serverCA, clientCA := egresstest.NewCA(t, "bank CA"), egresstest.NewCA(t, "our client CA")
	partner := newMTLSPartner(t, serverCA, clientCA)
	proxy := egresstest.NewProxy(t, "")
	dir := t.TempDir()
	crt, key := clientCA.Client(t, "soon-expiring", 5*24*time.Hour).Write(t, dir, "client")
	caFile := filepath.Join(dir, "bank-ca.pem")
	egresstest.WriteFile(t, caFile, serverCA.PEM, 0o644)
	cfg := filepath.Join(dir, "notifier.toml")
	writeFile(t, cfg, fmt.Sprintf(`
[[partner]]
name = "bank"
url_prefix = ["%s/"]
client_cert = %q
client_key = %q
ca_file = %q
min_tls = "1.2"
`, partner.URL, crt, key, caFile))
	db := filepath.Join(dir, "attempts.db")
	const token = "test-token-0123456789"
	proxyURL := strings.Replace(proxy.URL, "http://", "http://relay:pr0xy-s3cret@", 1)
	logs := startServe(t, rdb, "--redis", srv.URL(), "--db", db, "--config", cfg, "--allow-cidr", "127.0.0.1/32",
		"--egress-proxy", proxyURL, "--listen", "127.0.0.1:0", "--api-token", token)
	addr := waitLog(t, logs, regexp.MustCompile(`msg="api listening" addr=(\S+)`))
	if out := logs.String(); !regexp.MustCompile(`level=WARN msg="certificate expires soon" partner=bank kind=client .*days_left=4`).MatchString(out) {
		t.Errorf("no WARN at start for a certificate ending in 5 days:\n%s", out)
	}

	enqueue := func(id string) {
		t.Helper()
		code, _, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", partner.URL+"/notify?sig=abc", "--id", id, "-d", `{"paid":true}`)
		if code != 0 {
			t.Fatalf("enqueue %s = %d %s", id, code, errOut)
		}
	}
	enqueue("bank-1")
	rows := waitRows(t, db, 1)
	if rows[0].Outcome != notifier.Delivered || rows[0].Partner != "bank" {
		t.Fatalf("first attempt %+v; want delivered under bank", rows[0])
	}
	if got := partner.seen(); len(got) != 1 || got[0] != "soon-expiring" {
		t.Fatalf("partner saw client certificates %q, want [soon-expiring]", got)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("relay:pr0xy-s3cret"))
	if got := proxy.Requests(); len(got) != 1 || got[0].Method != http.MethodConnect ||
		got[0].Target != strings.TrimPrefix(partner.URL, "https://") || got[0].Auth != wantAuth {
		t.Fatalf("proxy was asked %+v; want one CONNECT to the partner with the credentials", got)
	}

	// Rotation: new files in place, no restart.
	rotated := clientCA.Client(t, "rotated", 90*24*time.Hour)
	rotated.Write(t, dir, "client")
	waitLog(t, logs, regexp.MustCompile(`msg="(reloaded) certificate files" partner=bank`))
	enqueue("bank-2")
	waitRows(t, db, 2)
	if got := partner.seen(); len(got) != 2 || got[1] != "rotated" {
		t.Fatalf("partner saw %q after the rotation, want the rotated certificate last", got)
	}

	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`notifier_tls_cert_expiry_timestamp_seconds\{file="[^"]*client.crt",kind="client",partner="bank"\} (\S+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no client certificate expiry in /metrics:\n%s", body)
	}
	if v, _ := strconv.ParseFloat(string(m[1]), 64); int64(v) != rotated.Leaf.NotAfter.Unix() {
		t.Errorf("expiry metric %s, want the rotated certificate's %d", m[1], rotated.Leaf.NotAfter.Unix())
	}
	if !strings.Contains(string(body), `kind="ca",partner="bank"`) {
		t.Errorf("no CA expiry in /metrics")
	}
	if strings.Contains(logs.String(), "pr0xy-s3cret") {
		t.Errorf("the proxy password was logged")
	}
}

// TestProxiedLoopbackTargetIsBlocked: with a proxy, the guard checks the
// target before the proxy is asked for it: a name that resolves to
// loopback is refused (outcome blocked) and the proxy never hears of it,
// although the proxy's own address is allowed.
func TestProxiedLoopbackTargetIsBlocked(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	proxy := egresstest.NewProxy(t, "127.0.0.2:0")
	db := filepath.Join(t.TempDir(), "attempts.db")
	startServe(t, rdb, "--redis", srv.URL(), "--db", db, "--allow-cidr", "127.0.0.2/32", "--egress-proxy", proxy.URL)
	code, _, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", "http://localhost:9/internal", "--id", "sneaky")
	if code != 0 {
		t.Fatalf("enqueue = %d %s", code, errOut)
	}
	rows := waitRows(t, db, 1)
	if rows[0].Outcome != notifier.Blocked || !strings.Contains(rows[0].Error, "address blocked") {
		t.Fatalf("attempt %+v; want blocked by the guard", rows[0])
	}
	if got := proxy.Requests(); len(got) != 0 {
		t.Errorf("the proxy was asked %+v", got)
	}
}

// TestBlockedEgressProxyIsRefusedAtStart: a proxy on an address the guard
// blocks would fail every attempt, so serve refuses to start, with one
// line that does not show the proxy's password.
func TestBlockedEgressProxyIsRefusedAtStart(t *testing.T) {
	srv := redistest.Start(t)
	db := filepath.Join(t.TempDir(), "attempts.db")
	code, _, errOut := runCLI(t, "", "serve", "--redis", srv.URL(), "--db", db, "--egress-proxy", "http://u:hunter2@127.0.0.1:3128")
	if code != exitBadInput || !strings.Contains(errOut, "--allow-cidr") || strings.Contains(errOut, "hunter2") ||
		strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("serve = %d %q; want exit 2, one line naming --allow-cidr, no password", code, errOut)
	}
	code, _, errOut = runCLI(t, "", "serve", "--redis", srv.URL(), "--db", db, "--egress-proxy", "socks5://127.0.0.1:1080")
	if code != exitBadInput || !strings.Contains(errOut, "--egress-proxy") {
		t.Errorf("serve with a socks proxy = %d %q; want exit 2", code, errOut)
	}
}
