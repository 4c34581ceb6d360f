package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/notifier/notifier/notifier"
)

// certExpiryDesc is notifier_tls_cert_expiry_timestamp_seconds: alert on
// `notifier_tls_cert_expiry_timestamp_seconds - time() < 14*86400`.
var certExpiryDesc = prometheus.NewDesc("notifier_tls_cert_expiry_timestamp_seconds",
	"When each configured certificate stops being valid (Unix seconds), by partner, kind (client: the client certificate; ca: the earliest-expiring root of ca_file) and file, as last read.",
	[]string{"partner", "kind", "file"}, nil)

// CertExpiry is a Prometheus collector of the configured certificates'
// expiry times, read from its source at scrape time, so a certificate
// rotated without a restart is reported as it is now.
type CertExpiry struct {
	src func() []notifier.CertExpiry
}

// NewCertExpiry returns the collector of src's certificates (usually
// Egress.CertExpiries); a nil src reports none.
func NewCertExpiry(src func() []notifier.CertExpiry) *CertExpiry { return &CertExpiry{src: src} }

// Describe implements prometheus.Collector.
func (c *CertExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

// Collect implements prometheus.Collector.
func (c *CertExpiry) Collect(ch chan<- prometheus.Metric) {
	if c.src == nil {
		return
	}
	for _, e := range c.src() {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(e.NotAfter.Unix()), e.Partner, e.Kind, e.File)
	}
}
