package notifier

import (
	"context"
	"slices"
	"time"
)

// park sets job's attempt aside while its partner is paused.
func (d *Dispatcher) park(ctx context.Context, job Job, partner string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := d.Pauser.Park(sctx, job, partner); err != nil {
		d.Logger.Error("park attempt of a paused partner", "id", job.Notice.ID, "partner", partner, "err", err)
		return
	}
	d.stats.Parked.Add(1)
}

// partnerResult reports an attempt's result to the shared pause state.
func (d *Dispatcher) partnerResult(ctx context.Context, p *Partner, ok bool, gone string) {
	if d.Pauser == nil {
		return
	}
	paused, err := d.Pauser.PartnerResult(ctx, p.Name, ok, p.PauseAfter, gone)
	if err != nil {
		d.Logger.Error("record partner result", "partner", p.Name, "err", err)
		return
	}
	if paused {
		d.stats.Paused.Add(1)
		d.Logger.Warn("paused a partner; its notices wait until `notifier partner resume`", "partner", p.Name)
		d.refreshPauses(ctx)
	}
}

func (d *Dispatcher) isPaused(name string) bool {
	if m := d.paused.Load(); m != nil {
		return (*m)[name].Paused
	}
	return false
}

// stillPaused asks the store, not the cache, before parking: a partner
// resumed a moment ago must not have its notices parked again.
func (d *Dispatcher) stillPaused(ctx context.Context, name string) bool {
	m, err := d.Pauser.Paused(ctx, []string{name})
	if err != nil {
		return true // the cache said paused; parking loses nothing
	}
	return m[name].Paused
}

// watchPauses keeps the paused-partner cache fresh: a pause or resume by
// another serve or the CLI takes effect here within a second. Every
// orphanCheck (and at start) it re-arms attempts parked for partners that
// are not configured any more, which nobody would ever resume.
func (d *Dispatcher) watchPauses(ctx context.Context) {
	if d.Pauser == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var checked time.Time
	for {
		if time.Since(checked) >= orphanCheck {
			d.unparkOrphans(ctx)
			checked = time.Now()
		}
		if len(d.Partners.Names()) > 0 {
			d.refreshPauses(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.pausesNow:
		}
	}
}

// orphanCheck is how often parked attempts of partners that left the config
// are looked for: they appear only when a serve starts with a new config.
const orphanCheck = 30 * time.Second

// unparkOrphans re-arms, due now, the attempts parked for partners this
// dispatcher does not know: they are sent as notices of no partner.
func (d *Dispatcher) unparkOrphans(ctx context.Context) {
	names, err := d.Pauser.ParkedPartners(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.Logger.Error("read partners with parked attempts", "err", err)
		}
		return
	}
	for _, name := range orphans(names, d.Partners.Names()) {
		n, err := d.Pauser.Unpark(ctx, name)
		if err != nil {
			d.Logger.Error("re-arm attempts parked for a partner no longer configured", "partner", name, "err", err)
			continue
		}
		if n > 0 {
			d.Logger.Warn("re-armed attempts parked for a partner that is no longer configured; they are sent as notices of no partner",
				"partner", name, "count", n)
		}
	}
}

// orphans returns the names in parked that are not in configured.
func orphans(parked, configured []string) []string {
	var out []string
	for _, name := range parked {
		if !slices.Contains(configured, name) {
			out = append(out, name)
		}
	}
	return out
}

func (d *Dispatcher) refreshPauses(ctx context.Context) {
	m, err := d.Pauser.Paused(ctx, d.Partners.Names())
	if err != nil {
		if ctx.Err() == nil {
			d.Logger.Error("read paused partners", "err", err)
		}
		return
	}
	if old := d.paused.Swap(&m); old != nil {
		for name, st := range m {
			if was := (*old)[name]; was.Paused != st.Paused {
				if st.Paused {
					d.Logger.Info("partner paused; its notices are parked until it resumes", "partner", name)
				} else {
					d.Logger.Info("partner resumed", "partner", name)
				}
			}
		}
	}
	for name, st := range m {
		if !st.Paused && st.Parked > 0 {
			// Parked in the moment a resume was running, or resumed by
			// hand in Redis: nothing may stay parked for an active
			// partner.
			if n, err := d.Pauser.Unpark(ctx, name); err != nil {
				d.Logger.Error("re-arm attempts parked for an active partner", "partner", name, "err", err)
			} else if n > 0 {
				d.Logger.Info("re-armed attempts parked for an active partner", "partner", name, "count", n)
			}
		}
	}
}
