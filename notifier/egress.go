package notifier

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// PartnerEgress is how serve reaches one partner, when that differs from
// the default: its own TLS settings (a client certificate for mutual TLS, a
// private CA, another server name, a higher TLS floor) and its own proxy.
// The zero value means the defaults: system roots, TLS 1.2 or later, no
// client certificate, and --egress-proxy if set.
type PartnerEgress struct {
	// ClientCert and ClientKey are PEM files of the certificate (with its
	// chain) and key presented when the partner asks for one. Both or
	// neither. They are read again when they change.
	ClientCert, ClientKey string
	// CAFile is a PEM file of the roots this partner's certificates must
	// chain to, instead of the system pool: a partner with a private CA
	// is then trusted for nothing a public CA signs, and that CA for no
	// other partner. Read again when it changes.
	CAFile string
	// ServerName is the name its certificate must carry (and the SNI sent)
	// when that is not the URL's host; "": the URL's host.
	ServerName string
	// MinTLS is the lowest TLS version accepted (tls.VersionTLS12 or
	// tls.VersionTLS13); 0: TLS 1.2.
	MinTLS uint16
	// Proxy replaces serve's --egress-proxy for this partner; nil: that
	// one, if any.
	Proxy *url.URL
}

// IsZero reports whether e asks for nothing beyond the defaults.
func (e PartnerEgress) IsZero() bool { return e == PartnerEgress{} }

// hasTLS reports whether e has TLS settings of its own.
func (e PartnerEgress) hasTLS() bool {
	return e.ClientCert != "" || e.CAFile != "" || e.ServerName != "" || e.MinTLS != 0
}

// rawEgress is the egress part of a [[partner]] table. It is embedded in
// rawPartner, so its keys sit in the partner's table beside the others.
type rawEgress struct {
	ClientCert string `toml:"client_cert"`
	ClientKey  string `toml:"client_key"`
	CAFile     string `toml:"ca_file"`
	ServerName string `toml:"server_name"`
	MinTLS     string `toml:"min_tls"`
	Proxy      string `toml:"proxy"`
}

// build checks the egress settings and reads their files once, so a
// missing file, a key others can read or a certificate that does not parse
// stops serve at start with one line, not every attempt later.
func (r rawEgress) build(hasPrefixes bool) (PartnerEgress, error) {
	e := PartnerEgress{ClientCert: r.ClientCert, ClientKey: r.ClientKey, CAFile: r.CAFile, ServerName: r.ServerName}
	if (r.ClientCert == "") != (r.ClientKey == "") {
		return e, errors.New("client_cert and client_key go together")
	}
	if r.ClientCert != "" && !hasPrefixes {
		// Its certificate would go to whatever URL a notice naming it has.
		return e, errors.New("client_cert needs url_prefix: a partner's certificate goes only to its own URLs")
	}
	switch r.MinTLS {
	case "", "1.2":
		if r.MinTLS != "" {
			e.MinTLS = tls.VersionTLS12
		}
	case "1.3":
		e.MinTLS = tls.VersionTLS13
	default:
		return e, fmt.Errorf("min_tls %q: want 1.2 or 1.3", r.MinTLS)
	}
	if r.ServerName != "" {
		if err := ValidateURL("https://" + r.ServerName + "/"); err != nil || strings.ContainsAny(r.ServerName, ":/[]") {
			return e, fmt.Errorf("server_name %q: want a host name", r.ServerName)
		}
	}
	if r.Proxy != "" {
		u, err := ParseProxyURL(r.Proxy)
		if err != nil {
			return e, fmt.Errorf("proxy: %v", err)
		}
		e.Proxy = u
	}
	if _, err := loadTLSFiles(e); err != nil {
		return e, err
	}
	return e, nil
}

// ParseProxyURL reads an egress proxy URL: http://, a host, optional
// user:password (sent as Proxy-Authorization), and nothing else. An
// https:// proxy is refused: the TLS to it would be made with the
// partner's TLS settings (its CA, its client certificate), which are meant
// for the partner alone. Its errors never contain the password.
func ParseProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("does not parse as a URL (want http://[user:password@]host:port)")
	}
	switch {
	case u.Scheme != "http":
		return nil, fmt.Errorf("%s: scheme must be http (CONNECT carries https end to end)", u.Redacted())
	case u.Hostname() == "":
		return nil, fmt.Errorf("%s: no host", u.Redacted())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%s: want no path, query or fragment", u.Redacted())
	}
	return u, nil
}

// tlsFiles is what was read of a partner's certificate files, and when.
type tlsFiles struct {
	cert   *tls.Certificate // nil: no client certificate
	roots  *x509.CertPool   // nil: the system pool
	caEnds time.Time        // the earliest NotAfter in CAFile
	stamps [3]fileStamp     // ClientCert, ClientKey, CAFile
}

// fileStamp tells whether a file changed: a rotation replaces the file (a
// new inode, as a rename or a Kubernetes secret update does) or rewrites
// it (a new size or modification time).
type fileStamp struct {
	mod   int64 // Unix ns
	size  int64
	inode uint64
}

func stampOf(path string) (fileStamp, error) {
	if path == "" {
		return fileStamp{}, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{mod: fi.ModTime().UnixNano(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.inode = st.Ino
	}
	return s, nil
}

// loadTLSFiles reads e's certificate files: the client key only if no one
// but its owner may read or write it, the CA file only if it holds
// certificates and nothing else.
func loadTLSFiles(e PartnerEgress) (*tlsFiles, error) {
	f := &tlsFiles{}
	var err error
	for i, p := range []string{e.ClientCert, e.ClientKey, e.CAFile} {
		if f.stamps[i], err = stampOf(p); err != nil {
			return nil, fmt.Errorf("%s: %v", p, bare(err))
		}
	}
	if e.ClientCert != "" {
		if err := CheckSecretFile(e.ClientKey); err != nil {
			return nil, fmt.Errorf("client_key: %v", err)
		}
		cert, err := tls.LoadX509KeyPair(e.ClientCert, e.ClientKey)
		if err != nil {
			// Its errors name the files and what is wrong, never key bytes.
			return nil, fmt.Errorf("client_cert/client_key: %v", err)
		}
		f.cert = &cert
	}
	if e.CAFile != "" {
		pool, ends, err := readRoots(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %v", err)
		}
		f.roots, f.caEnds = pool, ends
	}
	return f, nil
}

// readRoots reads a PEM file of CA certificates and returns them as a pool,
// with the earliest time one of them expires.
func readRoots(path string) (*x509.CertPool, time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	pool := x509.NewCertPool()
	var ends time.Time
	n := 0
	for rest := b; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, time.Time{}, fmt.Errorf("%s: a %s block; want only CERTIFICATE blocks", path, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("%s: certificate %d: %v", path, n+1, err)
		}
		pool.AddCert(c)
		if n == 0 || c.NotAfter.Before(ends) {
			ends = c.NotAfter
		}
		n++
	}
	if n == 0 {
		return nil, time.Time{}, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, ends, nil
}

// CheckSecretFile returns an error if the file at path, which holds a
// secret (a private key), is not a regular file or may be read or written
// by anyone but its owner (its group included), as ssh checks its keys:
// the error says how to fix it.
func CheckSecretFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %v", path, bare(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: mode %04o lets others read or write it; chmod 600 it", path, perm)
	}
	return nil
}

// bare is err without the path an *os.PathError repeats, for messages that
// name the file themselves.
func bare(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// CertExpiry is when one configured certificate stops being valid: a
// partner's client certificate (Kind "client") or the earliest-expiring
// root of its ca_file (Kind "ca").
type CertExpiry struct {
	Partner  string
	Kind     string
	File     string
	NotAfter time.Time
}

// ExpiryWarning is how close to its end a configured certificate must be
// for serve to warn at start.
const ExpiryWarning = 14 * 24 * time.Hour

// expiries lists the certificates f holds for partner.
func (f *tlsFiles) expiries(partner string, e PartnerEgress) []CertExpiry {
	var out []CertExpiry
	if f.cert != nil && f.cert.Leaf != nil {
		out = append(out, CertExpiry{Partner: partner, Kind: "client", File: e.ClientCert, NotAfter: f.cert.Leaf.NotAfter})
	}
	if f.roots != nil {
		out = append(out, CertExpiry{Partner: partner, Kind: "ca", File: e.CAFile, NotAfter: f.caEnds})
	}
	return out
}
