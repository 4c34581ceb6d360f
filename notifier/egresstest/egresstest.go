// Package egresstest gives tests the real servers that egress is tested
// against: a private CA issuing server and client certificates, an HTTP
// proxy (CONNECT and plain forwarding) that records what it is asked for,
// and an OTLP/HTTP trace receiver that decodes what it gets. Everything
// listens on 127.0.0.1 only.
package egresstest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a private certificate authority.
type CA struct {
	Cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	PEM    []byte
	serial atomic.Int64
}

// NewCA returns a CA named cn, valid for a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: c, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.serial.Store(1)
	return ca
}

// Pool is a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issued is a certificate the CA issued, with its key, as PEM and as a
// tls.Certificate.
type Issued struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
	Leaf            *x509.Certificate
}

// Server issues a server certificate for names (DNS names, or IP
// addresses such as "127.0.0.1").
func (ca *CA) Server(t testing.TB, names ...string) Issued {
	return ca.issue(t, names[0], names, x509.ExtKeyUsageServerAuth, 24*time.Hour)
}

// Client issues a client certificate named cn that ends after validFor.
func (ca *CA) Client(t testing.TB, cn string, validFor time.Duration) Issued {
	return ca.issue(t, cn, nil, x509.ExtKeyUsageClientAuth, validFor)
}

func (ca *CA) issue(t testing.TB, cn string, names []string, usage x509.ExtKeyUsage, validFor time.Duration) Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	is := Issued{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
	if is.TLS, err = tls.X509KeyPair(is.CertPEM, is.KeyPEM); err != nil {
		t.Fatal(err)
	}
	is.Leaf, _ = x509.ParseCertificate(der)
	return is
}

// Write writes the certificate and key to dir/name.crt and dir/name.key
// (the key 0600) and returns their paths. Each file is written to a
// temporary name and renamed over the old one, as a rotation does.
func (is Issued) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	WriteFile(t, keyFile, is.KeyPEM, 0o600)
	WriteFile(t, certFile, is.CertPEM, 0o644)
	return certFile, keyFile
}

// WriteFile writes b to path through a temporary file renamed over it.
func WriteFile(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// forward sends the requests the proxy forwards: directly, whatever the
// environment says.
var forward = &http.Transport{DisableKeepAlives: true}

// ProxyRequest is what a Proxy was asked for.
type ProxyRequest struct {
	Method string // CONNECT, or the forwarded request's method
	Target string // host:port for CONNECT, the absolute URL otherwise
	Auth   string // the Proxy-Authorization header
}

// Proxy is an HTTP proxy on 127.0.0.1: CONNECT tunnels for https and plain
// forwarding of absolute-form requests for http. It records every request
// and connects wherever it is asked (the client's guard is what is tested).
type Proxy struct {
	URL   string // http://127.0.0.1:port
	ln    net.Listener
	mu    sync.Mutex
	got   []ProxyRequest
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// NewProxy starts a proxy on addr ("127.0.0.1:0" if empty), stopped when
// the test ends.
func NewProxy(t testing.TB, addr string) *Proxy {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close() // idle keep-alive connections of the client under test
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Requests returns what the proxy was asked for so far.
func (p *Proxy) Requests() []ProxyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProxyRequest(nil), p.got...)
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.handle(c) }()
	}
}

func (p *Proxy) track(c net.Conn, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) handle(c net.Conn) {
	p.track(c, true)
	defer p.track(c, false)
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		target := req.Host
		if req.Method != http.MethodConnect {
			target = req.URL.String()
		}
		p.mu.Lock()
		p.got = append(p.got, ProxyRequest{Method: req.Method, Target: target, Auth: req.Header.Get("Proxy-Authorization")})
		p.mu.Unlock()
		if req.Method == http.MethodConnect {
			up, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
			if err != nil {
				io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
				return
			}
			p.track(up, true)
			defer p.track(up, false)
			defer up.Close()
			io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			done := make(chan struct{})
			go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite(); close(done) }()
			io.Copy(c, up)
			<-done
			return
		}
		req.RequestURI = ""
		req.Header.Del("Proxy-Authorization")
		// The body is read here, not by the transport: its write loop may
		// still read from br after RoundTrip returns (a partner may answer
		// before reading the body), while the next ReadRequest reads br.
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		resp, err := forward.RoundTrip(req)
		if err != nil {
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			return
		}
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil {
			return
		}
	}
}
