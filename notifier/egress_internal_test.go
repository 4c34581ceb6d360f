package notifier

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"testing"
	"time"
)

// TestBlockedProxyIsNotABlockedNotice: when the guard refuses the proxy's
// own address at dial time (its name now resolves inside), the attempt
// fails with ErrProxyBlocked, retried like any failure, and not with
// ErrBlocked, which would give the notice up for the operator's setting.
func TestBlockedProxyIsNotABlockedNotice(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	proxy, _ := url.Parse("http://" + ln.Addr().String())
	// The target is allowed, the proxy's address is not.
	guard := &Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
	rt := proxied{newOutboundTransport(OutboundOptions{Timeout: 5 * time.Second, Guard: guard, Proxy: proxy})}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://127.0.0.2:9/cb", nil)
	_, err = rt.RoundTrip(req)
	if !errors.Is(err, ErrProxyBlocked) || errors.Is(err, ErrBlocked) {
		t.Fatalf("err = %v; want ErrProxyBlocked, not ErrBlocked", err)
	}
	if other := errors.New("refused"); proxyErr(other) != other || proxyErr(nil) != nil {
		t.Fatal("proxyErr changed an error that is not the proxy's refusal")
	}
}
