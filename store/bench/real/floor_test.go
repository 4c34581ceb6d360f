package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary be the partner process, as the driver is
// (startPartner runs its own executable with the argument "partner").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "partner" {
		if err := runPartner(); err != nil {
			fmt.Fprintln(os.Stderr, "partner:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestFloorsDoTheirWork: http-floor makes every POST to a partner process
// that answers them, and enqueue-floor's commands leave on a redis-server
// of serve's settings what they claim to write (it checks that itself and
// fails otherwise); both report per-notice CPU for their processes only.
func TestFloorsDoTheirWork(t *testing.T) {
	p, err := startPartner()
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r := &run{cfg: config{body: 200}, partner: p, tmp: t.TempDir()}
	const n = 600
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
	if c := res.CPUPerNotice; c == nil || c.Redis != 0 || c.Enqueue != 0 || c.Total != round1(c.Serve+c.Partner) {
		t.Errorf("http-floor CPU: %+v, want the sender's and the partner's only", c)
	}
	res, err = r.enqueueFloor(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "enqueue-floor" || res.Delivered != n || res.EnqueuePerSec <= 0 {
		t.Errorf("enqueue-floor: %+v", res)
	}
	if c := res.CPUPerNotice; c == nil || c.Serve != 0 || c.Partner != 0 || c.Total != c.Redis {
		t.Errorf("enqueue-floor CPU: %+v, want Redis's only", c)
	}
}
