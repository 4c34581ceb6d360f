package notifier_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/egresstest"
)

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestEgressProxy(t *testing.T) {
	ca := egresstest.NewCA(t, "private CA")
	https := newTLSPartner(t, ca, nil, "127.0.0.1")
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(plain.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	egresstest.WriteFile(t, caFile, ca.PEM, 0o644)
	proxy := egresstest.NewProxy(t, "")
	withCreds := mustURL(t, strings.Replace(proxy.URL, "http://", "http://relay:s3cret@", 1))
	d, _ := egressDeliverer(t, fmt.Sprintf("[[partner]]\nname = \"tls\"\nurl_prefix = [%q]\nca_file = %q\n", https.URL, caFile), withCreds, nil)
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("relay:s3cret"))

	t.Run("ConnectForHTTPS", func(t *testing.T) {
		res := post(d, https.URL+"/notify?token=x", "tls")
		if res.Err != nil || res.Status != http.StatusNoContent {
			t.Fatalf("status %d, err %v; want 204 through the proxy", res.Status, res.Err)
		}
		got := proxy.Requests()
		want := egresstest.ProxyRequest{Method: http.MethodConnect, Target: strings.TrimPrefix(https.URL, "https://"), Auth: wantAuth}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("proxy was asked %+v, want [%+v]", got, want)
		}
	})
	t.Run("ForwardingForHTTP", func(t *testing.T) {
		res := post(d, plain.URL+"/cb", "")
		if res.Err != nil || res.Status != http.StatusOK {
			t.Fatalf("status %d, err %v; want 200 through the proxy", res.Status, res.Err)
		}
		got := proxy.Requests()
		want := egresstest.ProxyRequest{Method: http.MethodPost, Target: plain.URL + "/cb", Auth: wantAuth}
		if len(got) != 2 || got[1] != want {
			t.Fatalf("proxy was asked %+v, want %+v last", got, want)
		}
	})
	t.Run("GuardChecksTheTargetBeforeTheProxyIsAsked", func(t *testing.T) {
		before := len(proxy.Requests())
		for _, target := range []string{"http://127.0.0.2:9/cb", "https://[::1]:9/cb", "http://169.254.169.254/latest/meta-data"} {
			res := post(d, target, "")
			if !errors.Is(res.Err, notifier.ErrBlocked) {
				t.Errorf("%s: err %v; want ErrBlocked", target, res.Err)
			}
		}
		if got := proxy.Requests(); len(got) != before {
			t.Errorf("the proxy was asked for a blocked target: %+v", got[before:])
		}
	})
}

func TestEgressProxyGuardsNamesByTheirAddresses(t *testing.T) {
	// The proxy is allowed, 127.0.0.1 is not: "localhost" resolves there.
	proxy := egresstest.NewProxy(t, "127.0.0.2:0")
	guard := &notifier.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
	eg, err := notifier.NewEgress(context.Background(), notifier.EgressOptions{Timeout: 5 * time.Second, Guard: guard,
		Proxy: mustURL(t, proxy.URL)})
	if err != nil {
		t.Fatal(err)
	}
	d := notifier.NewEgressDeliverer(5*time.Second, eg)
	res := post(d, "http://localhost:9/cb", "")
	if !errors.Is(res.Err, notifier.ErrBlocked) || !strings.Contains(res.Err.Error(), "localhost") {
		t.Fatalf("err %v; want ErrBlocked naming localhost", res.Err)
	}
	if got := proxy.Requests(); len(got) != 0 {
		t.Errorf("the proxy was asked %+v", got)
	}
}

func TestEgressProxyAddressIsGuarded(t *testing.T) {
	proxy := egresstest.NewProxy(t, "")
	guard := &notifier.Guard{} // nothing internal allowed
	_, err := notifier.NewEgress(context.Background(), notifier.EgressOptions{Guard: guard,
		Proxy: mustURL(t, strings.Replace(proxy.URL, "http://", "http://u:hunter2@", 1))})
	if !errors.Is(err, notifier.ErrConfig) || !strings.Contains(err.Error(), "--allow-cidr") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v; want a config error naming --allow-cidr, without the password", err)
	}
}

func TestPartnerProxyReplacesTheDefault(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(plain.Close)
	def, own := egresstest.NewProxy(t, ""), egresstest.NewProxy(t, "")
	d, _ := egressDeliverer(t, fmt.Sprintf("[[partner]]\nname = \"p\"\nurl_prefix = [%q]\nproxy = %q\n", plain.URL, own.URL),
		mustURL(t, def.URL), nil)
	if res := post(d, plain.URL+"/a", "p"); res.Status != http.StatusOK {
		t.Fatalf("status %d, err %v", res.Status, res.Err)
	}
	if res := post(d, plain.URL+"/b", ""); res.Status != http.StatusOK {
		t.Fatalf("status %d, err %v", res.Status, res.Err)
	}
	if got := own.Requests(); len(got) != 1 || got[0].Target != plain.URL+"/a" {
		t.Errorf("partner's proxy was asked %+v, want only /a", got)
	}
	if got := def.Requests(); len(got) != 1 || got[0].Target != plain.URL+"/b" {
		t.Errorf("--egress-proxy was asked %+v, want only /b", got)
	}
}
