package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary be the partner process, as the driver is.
func TestMain(m *testing.M) {
	if isPartner() {
		os.Exit(partnerMain())
	}
	os.Exit(m.Run())
}

// TestFloorsDoTheirWork: http-floor makes every POST to a partner process
// that answers them, over no more connections than it has workers and
// idle connections, and enqueue-floor's commands run on a redis-server of
// serve's settings (it checks that itself and fails otherwise); both
// report CPU for their processes only, and some for each (enough notices
// for /proc's 10 ms ticks to count).
func TestFloorsDoTheirWork(t *testing.T) {
	p, err := startPartner()
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r := &run{cfg: config{body: 200}, partner: p, tmp: t.TempDir()}
	const n = 3000
	res, err := r.httpFloor(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "http-floor" || res.Delivered != n || st.Arrived != n {
		t.Errorf("http-floor: %+v, partner saw %d, want %d delivered", res, st.Arrived, n)
	}
	if res.PartnerConns < 1 || res.PartnerConns > floorWorkers+floorIdle {
		t.Errorf("http-floor: %d connections for %d workers", res.PartnerConns, floorWorkers)
	}
	if c := res.CPUPerNotice; c == nil || c.Serve <= 0 || c.Partner <= 0 || c.Redis != 0 || c.Enqueue != 0 || c.Total != round1(c.Serve+c.Partner) {
		t.Errorf("http-floor CPU: %+v, want the sender's and the partner's only", c)
	}
	res, err = r.enqueueFloor(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "enqueue-floor" || res.Delivered != n || res.EnqueuePerSec <= 0 {
		t.Errorf("enqueue-floor: %+v", res)
	}
	if c := res.CPUPerNotice; c == nil || c.Redis <= 0 || c.Serve != 0 || c.Partner != 0 || c.Total != c.Redis {
		t.Errorf("enqueue-floor CPU: %+v, want Redis's only", c)
	}
}

// TestGCPercent: the floor collects garbage as serve would, with the GOGC
// that --serve-env gives it.
func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want int
	}{
		{nil, serveGCPercent},
		{[]string{"GOMEMLIMIT=1GiB"}, serveGCPercent},
		{[]string{"GOGC=100"}, 100},
		{[]string{"GOGC=100", "GOGC=off"}, -1},
		{[]string{"GOGC=x"}, serveGCPercent},
	} {
		if got := gcPercent(c.env); got != c.want {
			t.Errorf("gcPercent(%q) = %d, want %d", c.env, got, c.want)
		}
	}
}
