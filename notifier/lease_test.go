package notifier

import (
	"testing"
	"time"
)

func TestLeaseFor(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name                        string
		timeout, lease, slack, want time.Duration
	}{
		{"DefaultLeaseCoversDefaultTimeout", 15 * s, 25 * s, 10 * s, 25 * s},
		{"LongPartnerTimeoutExtends", 60 * s, 25 * s, 10 * s, 70 * s},
		{"ShortPartnerTimeoutKeepsLease", 2 * s, 25 * s, 10 * s, 25 * s},
		{"FixedLeaseNeverExtends", 60 * s, 25 * s, 0, 25 * s},
		{"TimeoutJustUnderLeaseExtendsBySlack", 24 * s, 25 * s, 10 * s, 34 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leaseFor(tt.timeout, tt.lease, tt.slack); got != tt.want {
				t.Errorf("leaseFor(%v, %v, %v) = %v, want %v", tt.timeout, tt.lease, tt.slack, got, tt.want)
			}
		})
	}
}
