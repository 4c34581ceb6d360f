package notifier_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
)

func TestGuardCheckAddr(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	mapped := []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}
	tests := []struct {
		name  string
		guard notifier.Guard
		addr  string
		why   string // "" means allowed
	}{
		// Allowed: public unicast.
		{"PublicGoogle", notifier.Guard{}, "8.8.8.8", ""},
		{"PublicCloudflare", notifier.Guard{}, "1.1.1.1", ""},
		{"PublicIPv6", notifier.Guard{}, "2606:4700::1111", ""},
		{"PublicMapped", notifier.Guard{}, "::ffff:8.8.8.8", ""},
		{"PublicNAT64", notifier.Guard{}, "64:ff9b::808:808", ""},
		{"Public6to4", notifier.Guard{}, "2002:808:808::1", ""},
		{"JustBelowCGNAT", notifier.Guard{}, "100.63.255.255", ""},
		{"JustAbove172Private", notifier.Guard{}, "172.32.0.1", ""},
		// Blocked, one or more per range.
		{"ThisNetwork", notifier.Guard{}, "0.0.0.0", "unspecified"},
		{"ThisNetworkHost", notifier.Guard{}, "0.1.2.3", "unspecified"},
		{"UnspecifiedIPv6", notifier.Guard{}, "::", "unspecified"},
		{"Loopback", notifier.Guard{}, "127.0.0.1", "loopback"},
		{"LoopbackAnywhereIn8", notifier.Guard{}, "127.255.0.9", "loopback"},
		{"LoopbackIPv6", notifier.Guard{}, "::1", "loopback"},
		{"Private10", notifier.Guard{}, "10.0.0.1", "private"},
		{"Private172", notifier.Guard{}, "172.31.255.254", "private"},
		{"Private192", notifier.Guard{}, "192.168.1.1", "private"},
		{"UniqueLocal", notifier.Guard{}, "fd00::1", "private"},
		{"UniqueLocalFC", notifier.Guard{}, "fc00::1", "private"},
		{"LinkLocal", notifier.Guard{}, "169.254.1.1", "link-local"},
		{"Metadata", notifier.Guard{}, "169.254.169.254", "link-local"},
		{"LinkLocalIPv6", notifier.Guard{}, "fe80::1", "link-local"},
		{"LinkLocalIPv6Zone", notifier.Guard{}, "fe80::1%eth0", "link-local"},
		{"CGNAT", notifier.Guard{}, "100.64.0.1", "shared CGNAT"},
		{"CGNATTop", notifier.Guard{}, "100.127.255.255", "shared CGNAT"},
		{"Multicast", notifier.Guard{}, "224.0.0.1", "multicast"},
		{"MulticastTop", notifier.Guard{}, "239.255.255.250", "multicast"},
		{"MulticastIPv6", notifier.Guard{}, "ff02::1", "multicast"},
		{"Broadcast", notifier.Guard{}, "255.255.255.255", "broadcast"},
		{"Reserved", notifier.Guard{}, "240.0.0.1", "reserved"},
		{"Benchmarking", notifier.Guard{}, "198.19.0.1", "benchmarking"},
		{"IETF", notifier.Guard{}, "192.0.0.8", "IETF protocol assignments"},
		{"TestNet1", notifier.Guard{}, "192.0.2.1", "documentation"},
		{"TestNet2", notifier.Guard{}, "198.51.100.1", "documentation"},
		{"TestNet3", notifier.Guard{}, "203.0.113.1", "documentation"},
		{"DocumentationIPv6", notifier.Guard{}, "2001:db8::1", "documentation"},
		{"Teredo", notifier.Guard{}, "2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"LocalUseNAT64", notifier.Guard{}, "64:ff9b:1::a00:1", "local-use NAT64"},
		{"IPv4Compatible", notifier.Guard{}, "::8.8.8.8", "IPv4-compatible"},
		{"SiteLocal", notifier.Guard{}, "fec0::1", "site-local"},
		// Other spellings of an internal IPv4 address.
		{"MappedLoopback", notifier.Guard{}, "::ffff:127.0.0.1", "loopback"},
		{"MappedMetadata", notifier.Guard{}, "::ffff:169.254.169.254", "link-local"},
		{"MappedMetadataHex", notifier.Guard{}, "::ffff:a9fe:a9fe", "link-local"},
		{"NAT64Metadata", notifier.Guard{}, "64:ff9b::a9fe:a9fe", "link-local via NAT64"},
		{"NAT64Loopback", notifier.Guard{}, "64:ff9b::127.0.0.1", "loopback via NAT64"},
		{"SixToFourPrivate", notifier.Guard{}, "2002:a00:1::1", "private via 6to4"},
		{"Invalid", notifier.Guard{}, "", "not an IP address"},
		// Opting out.
		{"AllowPrivateLoopback", notifier.Guard{AllowPrivate: true}, "127.0.0.1", ""},
		{"AllowPrivateMetadata", notifier.Guard{AllowPrivate: true}, "169.254.169.254", ""},
		{"AllowListed", notifier.Guard{Allow: loopback}, "127.0.0.1", ""},
		{"AllowListedMapped", notifier.Guard{Allow: loopback}, "::ffff:127.0.0.1", ""},
		{"AllowListNotOthers", notifier.Guard{Allow: loopback}, "10.0.0.1", "private"},
		{"AllowListNotIPv6Loopback", notifier.Guard{Allow: loopback}, "::1", "loopback"},
		{"AllowMappedPrefix", notifier.Guard{Allow: mapped}, "10.1.2.3", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.addr != "" {
				ip = netip.MustParseAddr(tt.addr)
			}
			err := tt.guard.CheckAddr(ip)
			if tt.why == "" {
				if err != nil {
					t.Fatalf("CheckAddr(%s) = %v, want nil", tt.addr, err)
				}
				return
			}
			if !errors.Is(err, notifier.ErrBlocked) {
				t.Fatalf("CheckAddr(%s) = %v, want an error wrapping ErrBlocked", tt.addr, err)
			}
			if want := "address blocked (" + tt.why + ")"; !strings.HasSuffix(err.Error(), want) {
				t.Fatalf("CheckAddr(%s) = %q, want it to end in %q", tt.addr, err, want)
			}
		})
	}
}

func TestGuardNilChecksNothing(t *testing.T) {
	var g *notifier.Guard
	if err := g.CheckAddr(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Fatalf("nil Guard CheckAddr = %v, want nil", err)
	}
	if err := g.Control("tcp", "127.0.0.1:80", nil); err != nil {
		t.Fatalf("nil Guard Control = %v, want nil", err)
	}
}

func TestGuardControl(t *testing.T) {
	tests := []struct {
		address string
		want    string // "" means allowed
	}{
		{"8.8.8.8:443", ""},
		{"[2606:4700::1111]:443", ""},
		{"10.0.0.1:80", "address blocked (private)"},
		{"[::ffff:169.254.169.254]:80", "address blocked (link-local)"},
		{"[fe80::1%eth0]:80", "address blocked (link-local)"},
		{"localhost:80", "address blocked (not an IP address)"},
		{"/run/notifier.sock", "address blocked (not an IP address)"},
		{"", "address blocked (not an IP address)"},
	}
	g := &notifier.Guard{}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			err := g.Control("tcp", tt.address, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Control(%q) = %v, want nil", tt.address, err)
				}
				return
			}
			if !errors.Is(err, notifier.ErrBlocked) || err.Error() != tt.want {
				t.Fatalf("Control(%q) = %v, want %q wrapping ErrBlocked", tt.address, err, tt.want)
			}
		})
	}
}

func TestGuardParseCIDRs(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means an error
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{" 127.0.0.0/8 ", "127.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"127.0.0.1", "127.0.0.1/32"},
		{"::1", "::1/128"},
		{"fd00::/8", "fd00::/8"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:10.0.0.1", "10.0.0.1/32"},
		{"", ""},
		{"10.0.0.0/33", ""},
		{"10.0.0/8", ""},
		{"partner.example", ""},
		{"fe80::1%eth0", ""},
		{"0177.0.0.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := notifier.ParseCIDRs([]string{tt.in})
			if tt.want == "" {
				if !errors.Is(err, notifier.ErrBadCIDR) {
					t.Fatalf("ParseCIDRs(%q) = %v, %v; want an error wrapping ErrBadCIDR", tt.in, got, err)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0].String() != tt.want {
				t.Fatalf("ParseCIDRs(%q) = %v, %v; want [%s]", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestURLPolicyCheck(t *testing.T) {
	guarded := notifier.URLPolicy{Guard: &notifier.Guard{}}
	tests := []struct {
		name    string
		policy  notifier.URLPolicy
		url     string
		blocked bool   // the error also wraps ErrBlocked
		want    string // a part of the error; "" means allowed
	}{
		{"Allowed", guarded, "http://example.com/ok", false, ""},
		{"AllowedHTTPS", notifier.URLPolicy{HTTPSOnly: true, Guard: &notifier.Guard{}}, "https://example.com/ok", false, ""},
		{"AllowedPublicIP", guarded, "https://8.8.8.8:8443/hook?token=x", false, ""},
		{"AllowedPublicIPv6", guarded, "https://[2606:4700::1111]/hook", false, ""},
		{"AllowedFragment", guarded, "https://example.com/hook#part", false, ""},
		{"AllowedUpperCaseScheme", guarded, "HTTPS://Example.COM/", false, ""},
		{"AllowedNumericLabel", guarded, "https://123.example.com/", false, ""},
		{"AllowedHexLookingName", guarded, "https://0x7f.example/", false, ""},
		{"AllowedLoopbackWithoutGuard", notifier.URLPolicy{}, "http://127.0.0.1/", false, ""},
		{"Metadata", guarded, "http://169.254.169.254/latest/meta-data", true, "address blocked (link-local)"},
		{"Loopback", guarded, "http://127.0.0.1:8080/", true, "address blocked (loopback)"},
		{"MappedMetadata", guarded, "http://[::ffff:169.254.169.254]/", true, "address blocked (link-local)"},
		{"IPv6Loopback", guarded, "http://[::1]/", true, "address blocked (loopback)"},
		{"IPv6ZonedLinkLocal", guarded, "http://[fe80::1%25eth0]/", true, "address blocked (link-local)"},
		{"ShortForm", guarded, "http://127.1/", false, "non-canonical IPv4 host (reads as 127.0.0.1)"},
		{"Hex", guarded, "http://0x7f000001/", false, "non-canonical IPv4 host (reads as 127.0.0.1)"},
		{"HexParts", guarded, "http://0xA9.0xFE.0xA9.0xFE/", false, "non-canonical IPv4 host (reads as 169.254.169.254)"},
		{"Decimal", guarded, "http://2130706433/", false, "non-canonical IPv4 host (reads as 127.0.0.1)"},
		{"Octal", guarded, "http://0177.0.0.1/", false, "non-canonical IPv4 host (reads as 127.0.0.1)"},
		{"LeadingZeroPublic", guarded, "http://008.8.8.8/", false, "non-canonical IPv4 host"},
		{"TrailingDot", guarded, "http://169.254.169.254./", false, "non-canonical IPv4 host (reads as 169.254.169.254)"},
		{"Fullwidth", guarded, "http://１２７．０．０．１/", false, "non-canonical IPv4 host (reads as 127.0.0.1)"},
		{"IdeographicDots", guarded, "http://169。254。169。254/", false, "non-canonical IPv4 host (reads as 169.254.169.254)"},
		{"TooManyParts", guarded, "http://1.2.3.4.5/", false, "non-canonical IPv4 host"},
		{"Overflow", guarded, "http://4294967296/", false, "non-canonical IPv4 host"},
		{"NonCanonicalWithoutGuard", notifier.URLPolicy{}, "http://127.1/", false, "non-canonical IPv4 host"},
		{"Zone", guarded, "http://127.0.0.1%25eth0/", false, "bad host"},
		{"FTP", guarded, "ftp://x", false, "scheme must be http or https"},
		{"NoScheme", guarded, "//example.com/", false, "scheme must be http or https"},
		{"File", guarded, "file:///etc/passwd", false, "scheme must be http or https"},
		{"UserInfo", guarded, "http://u:p@example.com/", false, "must not carry user info"},
		{"EmptyUserInfo", guarded, "http://@example.com/", false, "must not carry user info"},
		{"HTTPSOnly", notifier.URLPolicy{HTTPSOnly: true}, "http://example.com/", false, "scheme http, want https"},
		{"TooLong", guarded, "https://example.com/" + strings.Repeat("a", 2048), false, "at most 2048"},
		{"TooLongForMaxLen", notifier.URLPolicy{MaxLen: 20}, "https://example.com/abc", false, "23 bytes, at most 20"},
		{"NoHost", guarded, "http:///path", false, "no host"},
		{"OnlyPort", guarded, "http://:80/", false, "no host"},
		{"Opaque", guarded, "http:example.com", false, "no host"},
		{"Unparsable", guarded, "http://exa mple.com/", false, "invalid character"},
		{"BracketedIPv4", guarded, "http://[127.0.0.1]/", false, "bad URL"},
		{"Empty", guarded, "", false, "scheme must be http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.url)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check(%q) = %v, want nil", tt.url, err)
				}
				return
			}
			if !errors.Is(err, notifier.ErrBadURL) {
				t.Fatalf("Check(%q) = %v, want an error wrapping ErrBadURL", tt.url, err)
			}
			if got := errors.Is(err, notifier.ErrBlocked); got != tt.blocked {
				t.Fatalf("Check(%q) = %v: wraps ErrBlocked = %v, want %v", tt.url, err, got, tt.blocked)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check(%q) = %q, want it to contain %q", tt.url, err, tt.want)
			}
			if tt.url != "" && strings.Contains(err.Error(), tt.url) {
				t.Fatalf("Check(%q) = %q: the error repeats the URL", tt.url, err)
			}
		})
	}
}

// guardClient is an http.Client that dials through g and records every
// address it is asked to dial. It never follows redirects unless follow.
func guardClient(t *testing.T, g *notifier.Guard, base *net.Dialer, follow bool) (*http.Client, func() []string) {
	t.Helper()
	var (
		mu     sync.Mutex
		dialed []string
	)
	dial := g.DialContext(base)
	tr := &http.Transport{
		Proxy: nil, // a proxy would bypass the dial-time check
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			return dial(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), dialed...)
	}
}

func TestGuardDialContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	byName := "http://localhost:" + port + "/"
	tests := []struct {
		name    string
		guard   *notifier.Guard
		url     string
		blocked bool
	}{
		{"BlocksLoopback", &notifier.Guard{}, srv.URL, true},
		{"BlocksNameResolvingToLoopback", &notifier.Guard{}, byName, true},
		{"AllowPrivate", &notifier.Guard{AllowPrivate: true}, srv.URL, false},
		{"AllowPrivateByName", &notifier.Guard{AllowPrivate: true}, byName, false},
		{"AllowListed", &notifier.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, srv.URL, false},
		{"AllowListOfOthers", &notifier.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, srv.URL, true},
		{"NilGuardChecksNothing", nil, srv.URL, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := guardClient(t, tt.guard, &net.Dialer{Timeout: 5 * time.Second}, false)
			resp, err := c.Get(tt.url)
			if tt.blocked {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("GET %s: status %d, want an error wrapping ErrBlocked", tt.url, resp.StatusCode)
				}
				if !errors.Is(err, notifier.ErrBlocked) || !strings.Contains(err.Error(), "address blocked (loopback)") {
					t.Fatalf("GET %s: %v, want an error wrapping ErrBlocked (loopback)", tt.url, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("GET %s: %v, want 200", tt.url, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: status %d, want 200", tt.url, resp.StatusCode)
			}
		})
	}
}

func TestGuardDialContextKeepsBaseControl(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var calls atomic.Int32
	base := &net.Dialer{ControlContext: func(context.Context, string, string, syscall.RawConn) error {
		calls.Add(1)
		return nil
	}}
	tests := []struct {
		name      string
		guard     *notifier.Guard
		wantCalls int32
		blocked   bool
	}{
		// A Dialer ignores Control when ControlContext is set, so the
		// guard must not be bypassed by a base ControlContext.
		{"GuardStillChecks", &notifier.Guard{}, 0, true},
		{"BaseRunsAfterGuard", &notifier.Guard{AllowPrivate: true}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			conn, err := tt.guard.DialContext(base)(context.Background(), "tcp", ln.Addr().String())
			if err == nil {
				conn.Close()
			}
			if got := errors.Is(err, notifier.ErrBlocked); got != tt.blocked {
				t.Fatalf("dial: %v; blocked = %v, want %v", err, got, tt.blocked)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Fatalf("base ControlContext ran %d times, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestGuardRedirectIsNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	g := &notifier.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	self := srv.Listener.Addr().String()

	t.Run("ClientGetsThe302", func(t *testing.T) {
		c, dialed := guardClient(t, g, &net.Dialer{Timeout: 5 * time.Second}, false)
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("status %d, want 302", resp.StatusCode)
		}
		if got := dialed(); len(got) != 1 || got[0] != self {
			t.Fatalf("dialed %v, want only [%s]", got, self)
		}
	})
	t.Run("FollowingIsStillBlockedAtDial", func(t *testing.T) {
		c, dialed := guardClient(t, g, &net.Dialer{Timeout: 5 * time.Second}, true)
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET followed the redirect: status %d", resp.StatusCode)
		}
		if !errors.Is(err, notifier.ErrBlocked) || !strings.Contains(err.Error(), "address blocked (link-local)") {
			t.Fatalf("GET: %v, want an error wrapping ErrBlocked (link-local)", err)
		}
		if got := dialed(); len(got) != 2 || got[1] != "169.254.169.254:80" {
			t.Fatalf("dialed %v, want [%s 169.254.169.254:80]", got, self)
		}
	})
}

// TestGuardChecksTheResolvedAddress resolves a name through a DNS server
// that answers 127.0.0.1 for everything, as a rebinding attacker's would:
// the URL passes at enqueue time (names are not resolved then) and the dial
// is refused.
func TestGuardChecksTheResolvedAddress(t *testing.T) {
	dns, queries := startLoopbackDNS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	const name = "rebind.test."
	if err := (notifier.URLPolicy{Guard: &notifier.Guard{}}).Check("http://" + name + ":" + port + "/"); err != nil {
		t.Fatalf("Check: %v, want nil: names are checked at dial time", err)
	}
	base := &net.Dialer{Timeout: 5 * time.Second, Resolver: &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", dns)
		},
	}}
	tests := []struct {
		name    string
		guard   *notifier.Guard
		blocked bool
	}{
		{"Blocked", &notifier.Guard{}, true},
		{"AllowPrivate", &notifier.Guard{AllowPrivate: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := queries.Load()
			conn, err := tt.guard.DialContext(base)(context.Background(), "tcp", net.JoinHostPort(name, port))
			if err == nil {
				conn.Close()
			}
			if queries.Load() == before {
				t.Fatal("the test DNS server got no query")
			}
			if got := errors.Is(err, notifier.ErrBlocked); got != tt.blocked {
				t.Fatalf("dial %s: %v; blocked = %v, want %v", name, err, got, tt.blocked)
			}
			if !tt.blocked && err != nil {
				t.Fatalf("dial %s: %v", name, err)
			}
		})
	}
}

// startLoopbackDNS serves DNS on a UDP port of 127.0.0.1, answering every A
// question with 127.0.0.1 and every other question with no records. It
// returns the server's address and a count of the queries it answered.
func startLoopbackDNS(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var queries atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := dnsReply(buf[:n]); reply != nil {
				queries.Add(1)
				_, _ = pc.WriteTo(reply, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().String(), &queries
}

// dnsReply answers a one-question query, or returns nil if q is not one.
func dnsReply(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		if q[i]&0xc0 != 0 {
			return nil
		}
		i += 1 + int(q[i])
	}
	if i+5 > len(q) {
		return nil
	}
	question := q[12 : i+5] // name, its terminating zero, type and class
	isA := binary.BigEndian.Uint16(q[i+1:i+3]) == 1
	r := make([]byte, 12, 12+len(question)+16)
	copy(r[0:2], q[0:2])                       // id
	binary.BigEndian.PutUint16(r[2:4], 0x8580) // response, authoritative, recursion desired and available
	binary.BigEndian.PutUint16(r[4:6], 1)      // one question
	r = append(r, question...)
	if isA {
		binary.BigEndian.PutUint16(r[6:8], 1) // one answer
		r = append(r,
			0xc0, 0x0c, // name: pointer to the question's
			0, 1, 0, 1, // type A, class IN
			0, 0, 0, 0, // TTL 0
			0, 4, 127, 0, 0, 1)
	}
	return r
}

// FuzzURLPolicyCheck feeds Check any string: it must not panic, must refuse
// with ErrBadURL without repeating the URL, and must never accept an IP
// literal host the Guard blocks or a host a browser or libc reads as IPv4
// while Go's dialer would not.
func FuzzURLPolicyCheck(f *testing.F) {
	for _, seed := range []string{
		"https://partner.example/hook?token=x#f",
		"http://127.1/",
		"http://0x7f000001/",
		"http://0177.0.0.1./",
		"http://2130706433/",
		"http://[::ffff:169.254.169.254]/",
		"http://[fe80::1%25eth0]:80/",
		"http://[64:ff9b::a9fe:a9fe]/",
		"http://１２７．０．０．１/",
		"http://u:p@example.com/",
		"http://0x/",
		"http://1.2.3.4.5/",
		"ftp://x",
	} {
		f.Add(seed)
	}
	p := notifier.URLPolicy{Guard: &notifier.Guard{}}
	f.Fuzz(func(t *testing.T, raw string) {
		err := p.Check(raw)
		if err != nil {
			if !errors.Is(err, notifier.ErrBadURL) {
				t.Fatalf("Check(%q) = %v, want an error wrapping ErrBadURL", raw, err)
			}
			if strings.Contains(raw, "://") && strings.Contains(err.Error(), raw) {
				t.Fatalf("Check(%q) = %q: the error repeats the URL", raw, err)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("Check(%q) = nil, but url.Parse: %v", raw, perr)
		}
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); err == nil {
			if err := p.Guard.CheckAddr(ip); err != nil {
				t.Fatalf("Check(%q) = nil for a blocked host: %v", raw, err)
			}
			return
		}
		// A name: its last label must not be a number in any base.
		h := strings.TrimRight(host, ".")
		last := strings.ToLower(h[strings.LastIndexByte(h, '.')+1:])
		if last != "" && strings.Trim(strings.TrimPrefix(last, "0x"), "0123456789abcdef") == "" &&
			(strings.HasPrefix(last, "0x") || strings.Trim(last, "0123456789") == "") {
			t.Fatalf("Check(%q) = nil for the numeric host %q", raw, host)
		}
	})
}

func ExampleURLPolicy_Check() {
	p := notifier.URLPolicy{HTTPSOnly: true, Guard: &notifier.Guard{}}
	for _, u := range []string{
		"https://partner.example/hooks?token=s3cret",
		"https://169.254.169.254/latest/meta-data",
		"https://0x7f000001/",
		"https://[::ffff:10.0.0.1]/",
		"https://user:pass@partner.example/",
		"http://partner.example/",
	} {
		fmt.Println(p.Check(u))
	}
	// Output:
	// <nil>
	// bad URL: host 169.254.169.254: address blocked (link-local)
	// bad URL: non-canonical IPv4 host (reads as 127.0.0.1)
	// bad URL: host ::ffff:10.0.0.1: address blocked (private)
	// bad URL: must not carry user info
	// bad URL: scheme http, want https
}

func ExampleGuard_CheckAddr() {
	allow, _ := notifier.ParseCIDRs([]string{"10.1.0.0/16"})
	g := &notifier.Guard{Allow: allow}
	for _, a := range []string{"1.1.1.1", "10.1.2.3", "10.2.0.1", "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe"} {
		fmt.Println(a, g.CheckAddr(netip.MustParseAddr(a)))
	}
	// Output:
	// 1.1.1.1 <nil>
	// 10.1.2.3 <nil>
	// 10.2.0.1 10.2.0.1: address blocked (private)
	// ::ffff:127.0.0.1 ::ffff:127.0.0.1: address blocked (loopback)
	// 64:ff9b::a9fe:a9fe 64:ff9b::a9fe:a9fe: address blocked (link-local via NAT64)
}
