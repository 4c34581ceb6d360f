package notifier_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/egresstest"
)

// loopbackGuard allows 127.0.0.1 only, as --allow-cidr 127.0.0.1 does.
var loopbackGuard = &notifier.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}

// tlsPartner starts an HTTPS partner on 127.0.0.1 with a certificate of ca
// for names. With clients set it requires a client certificate of that CA.
// It records the common name of each request's client certificate ("" for
// none).
type tlsPartner struct {
	*httptest.Server
	mu  sync.Mutex
	cns []string
}

func newTLSPartner(t *testing.T, ca *egresstest.CA, clients *egresstest.CA, names ...string) *tlsPartner {
	t.Helper()
	p := &tlsPartner{}
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		p.mu.Lock()
		p.cns = append(p.cns, cn)
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	conf := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, names...).TLS}}
	if clients != nil {
		conf.ClientAuth, conf.ClientCAs = tls.RequireAndVerifyClientCert, clients.Pool()
	}
	p.TLS = conf
	p.StartTLS()
	t.Cleanup(p.Close)
	return p
}

func (p *tlsPartner) lastCN() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cns) == 0 {
		return "<none>"
	}
	return p.cns[len(p.cns)-1]
}

// writeConfig writes a partner config and loads it.
func loadEgressConfig(t *testing.T, toml string) (*notifier.Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notifier.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	return notifier.LoadConfig(path)
}

// egressDeliverer loads the config and returns a Deliverer sending through
// its partners' egress settings, and the Egress.
func egressDeliverer(t *testing.T, toml string, proxy *url.URL, log *slog.Logger) (*notifier.Deliverer, *notifier.Egress) {
	t.Helper()
	cfg, err := loadEgressConfig(t, toml)
	if err != nil {
		t.Fatal(err)
	}
	eg, err := notifier.NewEgress(context.Background(), notifier.EgressOptions{Timeout: 5 * time.Second, MaxIdlePerHost: 4,
		Guard: loopbackGuard, Proxy: proxy, Partners: cfg.Partners, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return notifier.NewEgressDeliverer(5*time.Second, eg), eg
}

func post(d *notifier.Deliverer, u, partner string) notifier.Result {
	n := &notifier.Notice{ID: "egress-1", URL: u, Body: []byte(`{}`), Schedule: backoff.Schedule{0}, Stamp: time.Now()}
	return d.PostWith(context.Background(), n, 1, notifier.PostOptions{Partner: partner})
}

func TestMutualTLSPartner(t *testing.T) {
	serverCA, clientCA := egresstest.NewCA(t, "partner CA"), egresstest.NewCA(t, "our client CA")
	partner := newTLSPartner(t, serverCA, clientCA, "127.0.0.1")
	dir := t.TempDir()
	crt, key := clientCA.Client(t, "notifier-a", 30*24*time.Hour).Write(t, dir, "client")
	caFile := filepath.Join(dir, "partner-ca.pem")
	egresstest.WriteFile(t, caFile, serverCA.PEM, 0o644)
	d, _ := egressDeliverer(t, fmt.Sprintf(`
[[partner]]
name = "bank"
url_prefix = [%q]
client_cert = %q
client_key = %q
ca_file = %q
`, partner.URL, crt, key, caFile), nil, nil)

	t.Run("AcceptedWithTheConfiguredCertificate", func(t *testing.T) {
		res := post(d, partner.URL+"/notify", "bank")
		if res.Err != nil || res.Status != http.StatusNoContent {
			t.Fatalf("got status %d, err %v; want 204", res.Status, res.Err)
		}
		if got := partner.lastCN(); got != "notifier-a" {
			t.Errorf("partner saw client certificate %q, want notifier-a", got)
		}
	})
	t.Run("RefusedWithout", func(t *testing.T) {
		// A notice of no partner gets no certificate, and the system
		// pool does not trust the partner's private CA either.
		res := post(d, partner.URL+"/notify", "")
		if res.Err == nil || res.Status != 0 {
			t.Fatalf("got status %d, err %v; want a TLS failure", res.Status, res.Err)
		}
		if errors.Is(res.Err, notifier.ErrBlocked) {
			t.Errorf("a TLS failure must not read as blocked: %v", res.Err)
		}
	})
	t.Run("RefusedWithoutAClientCertificate", func(t *testing.T) {
		d2, _ := egressDeliverer(t, fmt.Sprintf("[[partner]]\nname = \"bank\"\nurl_prefix = [%q]\nca_file = %q\n", partner.URL, caFile), nil, nil)
		res := post(d2, partner.URL+"/notify", "bank")
		if res.Err == nil {
			t.Fatalf("got status %d without a client certificate; want the handshake refused", res.Status)
		}
	})
}

func TestPrivateCAAndServerName(t *testing.T) {
	ca := egresstest.NewCA(t, "private CA")
	// The certificate names another host than the URL's.
	partner := newTLSPartner(t, ca, nil, "pay.partner.test")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	egresstest.WriteFile(t, caFile, ca.PEM, 0o644)
	conf := func(extra string) string {
		return fmt.Sprintf("[[partner]]\nname = \"p\"\nurl_prefix = [%q]\nca_file = %q\n%s", partner.URL, caFile, extra)
	}
	d, _ := egressDeliverer(t, conf(`server_name = "pay.partner.test"`+"\n"+`min_tls = "1.3"`), nil, nil)
	if res := post(d, partner.URL+"/x", "p"); res.Err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("with ca_file and server_name: status %d, err %v; want 204", res.Status, res.Err)
	}
	d, _ = egressDeliverer(t, conf(""), nil, nil)
	if res := post(d, partner.URL+"/x", "p"); res.Err == nil || !strings.Contains(res.Err.Error(), "certificate") {
		t.Fatalf("without server_name: status %d, err %v; want a certificate name error", res.Status, res.Err)
	}
	other := egresstest.NewCA(t, "another CA")
	otherFile := filepath.Join(t.TempDir(), "other.pem")
	egresstest.WriteFile(t, otherFile, other.PEM, 0o644)
	d, _ = egressDeliverer(t, fmt.Sprintf("[[partner]]\nname = \"p\"\nurl_prefix = [%q]\nca_file = %q\nserver_name = \"pay.partner.test\"\n",
		partner.URL, otherFile), nil, nil)
	if res := post(d, partner.URL+"/x", "p"); res.Err == nil || !strings.Contains(res.Err.Error(), "unknown authority") {
		t.Fatalf("with another CA: status %d, err %v; want unknown authority", res.Status, res.Err)
	}
}

func TestRotatedCertificateIsUsedWithoutRestart(t *testing.T) {
	serverCA, clientCA := egresstest.NewCA(t, "partner CA"), egresstest.NewCA(t, "client CA")
	partner := newTLSPartner(t, serverCA, clientCA, "127.0.0.1")
	dir := t.TempDir()
	crt, key := clientCA.Client(t, "before", 30*24*time.Hour).Write(t, dir, "client")
	caFile := filepath.Join(dir, "ca.pem")
	egresstest.WriteFile(t, caFile, serverCA.PEM, 0o644)
	d, eg := egressDeliverer(t, fmt.Sprintf("[[partner]]\nname = \"bank\"\nurl_prefix = [%q]\nclient_cert = %q\nclient_key = %q\nca_file = %q\n",
		partner.URL, crt, key, caFile), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- eg.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if res := post(d, partner.URL, "bank"); res.Status != http.StatusNoContent || partner.lastCN() != "before" {
		t.Fatalf("first attempt: status %d, err %v, certificate %q", res.Status, res.Err, partner.lastCN())
	}
	rotated := clientCA.Client(t, "after", 60*24*time.Hour)
	rotated.Write(t, dir, "client")
	deadline := time.Now().Add(20 * time.Second)
	for partner.lastCN() != "after" {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate was not used within 20 s; partner saw %q", partner.lastCN())
		}
		time.Sleep(50 * time.Millisecond)
		if res := post(d, partner.URL, "bank"); res.Status != http.StatusNoContent {
			t.Fatalf("attempt during rotation: status %d, err %v", res.Status, res.Err)
		}
	}
	var client notifier.CertExpiry
	for _, c := range eg.CertExpiries() {
		if c.Kind == "client" {
			client = c
		}
	}
	if !client.NotAfter.Equal(rotated.Leaf.NotAfter) {
		t.Errorf("expiry reported %v, want the rotated certificate's %v", client.NotAfter, rotated.Leaf.NotAfter)
	}
}

func TestBrokenRotationKeepsTheOldCertificate(t *testing.T) {
	serverCA, clientCA := egresstest.NewCA(t, "partner CA"), egresstest.NewCA(t, "client CA")
	partner := newTLSPartner(t, serverCA, clientCA, "127.0.0.1")
	dir := t.TempDir()
	crt, key := clientCA.Client(t, "good", 30*24*time.Hour).Write(t, dir, "client")
	caFile := filepath.Join(dir, "ca.pem")
	egresstest.WriteFile(t, caFile, serverCA.PEM, 0o644)
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	d, eg := egressDeliverer(t, fmt.Sprintf("[[partner]]\nname = \"bank\"\nurl_prefix = [%q]\nclient_cert = %q\nclient_key = %q\nca_file = %q\n",
		partner.URL, crt, key, caFile), nil, log)
	egresstest.WriteFile(t, crt, []byte("not a certificate"), 0o644)
	eg.Reload()
	if !strings.Contains(logs.String(), "do not load") {
		t.Errorf("no warning logged for a certificate that does not load: %s", logs.String())
	}
	if res := post(d, partner.URL, "bank"); res.Status != http.StatusNoContent || partner.lastCN() != "good" {
		t.Fatalf("after a broken rotation: status %d, err %v, certificate %q; want the old one used", res.Status, res.Err, partner.lastCN())
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func TestExpiringCertificateIsAWarning(t *testing.T) {
	ca := egresstest.NewCA(t, "client CA")
	dir := t.TempDir()
	crt, key := ca.Client(t, "short", 3*24*time.Hour).Write(t, dir, "client")
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	_, eg := egressDeliverer(t, fmt.Sprintf("[[partner]]\nname = \"bank\"\nurl_prefix = [\"https://127.0.0.1:1/\"]\nclient_cert = %q\nclient_key = %q\n",
		crt, key), nil, log)
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "certificate expires soon") ||
		!strings.Contains(out, "partner=bank") || !strings.Contains(out, "days_left=2") {
		t.Errorf("log = %q; want a WARN naming the partner and 2 days left", out)
	}
	if got := eg.CertExpiries(); len(got) != 1 || got[0].Partner != "bank" || got[0].Kind != "client" || got[0].File != crt {
		t.Errorf("CertExpiries() = %+v", got)
	}
	logs.Reset()
	crt, key = ca.Client(t, "long", 90*24*time.Hour).Write(t, t.TempDir(), "client")
	egressDeliverer(t, fmt.Sprintf("[[partner]]\nname = \"bank\"\nurl_prefix = [\"https://127.0.0.1:1/\"]\nclient_cert = %q\nclient_key = %q\n",
		crt, key), nil, log)
	if strings.Contains(logs.String(), "expires soon") {
		t.Errorf("a certificate valid for 90 days was warned about: %s", logs.String())
	}
}

func TestEgressConfigErrors(t *testing.T) {
	ca := egresstest.NewCA(t, "CA")
	dir := t.TempDir()
	crt, key := ca.Client(t, "c", 30*24*time.Hour).Write(t, dir, "client")
	open := filepath.Join(dir, "open.key")
	egresstest.WriteFile(t, open, ca.Client(t, "c", time.Hour).KeyPEM, 0o644)
	caFile := filepath.Join(dir, "ca.pem")
	egresstest.WriteFile(t, caFile, ca.PEM, 0o644)
	keyAsCA := filepath.Join(dir, "keyasca.pem")
	egresstest.WriteFile(t, keyAsCA, ca.Client(t, "c", time.Hour).KeyPEM, 0o600)
	const pre = "[[partner]]\nname = \"p\"\nurl_prefix = [\"https://pay.example.com/\"]\n"
	for _, tc := range []struct{ name, toml, want string }{
		{"KeyReadableByOthers", pre + fmt.Sprintf("client_cert = %q\nclient_key = %q\n", crt, open), "chmod 600"},
		{"CertWithoutKey", pre + fmt.Sprintf("client_cert = %q\n", crt), "go together"},
		{"MissingFile", pre + fmt.Sprintf("client_cert = %q\nclient_key = %q\n", crt+".gone", key), "no such file"},
		{"KeyOfAnotherCert", pre + fmt.Sprintf("client_cert = %q\nclient_key = %q\n", crt, keyAsCA), "private key does not match"},
		{"CAFileWithAKey", pre + fmt.Sprintf("ca_file = %q\n", keyAsCA), "want only CERTIFICATE"},
		{"CertWithoutPrefix", fmt.Sprintf("[[partner]]\nname = \"p\"\nclient_cert = %q\nclient_key = %q\n", crt, key), "needs url_prefix"},
		{"OldTLS", pre + "min_tls = \"1.1\"\n", "want 1.2 or 1.3"},
		{"ProxyScheme", pre + "proxy = \"socks5://127.0.0.1:1080\"\n", "scheme must be http"},
		{"HTTPSProxy", pre + "proxy = \"https://127.0.0.1:3128\"\n", "scheme must be http"},
		{"ProxyPasswordNotShown", pre + "proxy = \"ftp://user:hunter2@127.0.0.1:1080\"\n", "xxxxx"},
		{"ServerNameNotAHost", pre + "server_name = \"a/b\"\n", "want a host name"},
		{"NoSkipVerify", pre + "insecure_skip_verify = true\n", "unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadEgressConfig(t, tc.toml)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, notifier.ErrConfig) {
				t.Fatalf("err = %v; want ErrConfig containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error shows a password or spans lines: %q", err)
			}
		})
	}
	cfg, err := loadEgressConfig(t, pre+fmt.Sprintf("client_cert = %q\nclient_key = %q\nca_file = %q\nserver_name = \"pay.example.com\"\nmin_tls = \"1.3\"\nproxy = \"http://u:p@127.0.0.1:3128\"\n", crt, key, caFile))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Partners[0].Egress
	if e.ClientCert != crt || e.ClientKey != key || e.CAFile != caFile || e.ServerName != "pay.example.com" ||
		e.MinTLS != tls.VersionTLS13 || e.Proxy == nil || e.Proxy.Host != "127.0.0.1:3128" {
		t.Errorf("egress = %+v", e)
	}
}
