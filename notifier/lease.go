package notifier

import (
	"context"
	"time"
)

// A claim's lease must outlast the attempt it covers: a POST still running
// when its lease runs out is claimed again by the sweep, and the partner is
// POSTed the same attempt once per lease for as long as it keeps answering
// slowly.

// holdLease makes sure job's claim outlasts an attempt with this timeout (0:
// d.Timeout), extending it when LeaseSlack asks for more than Lease. False if
// the attempt must not be made: the claim was lost, or could not be extended
// (the lease then runs out and the attempt is made later).
func (d *Dispatcher) holdLease(ctx context.Context, job Job, timeout time.Duration) bool {
	if timeout <= 0 {
		timeout = d.Timeout
	}
	need := leaseFor(timeout, d.Lease, d.LeaseSlack)
	if need <= d.Lease {
		return true
	}
	kept, err := d.Queue.Extend(ctx, job, need)
	switch {
	case err != nil:
		d.Logger.Error("extend the lease of a long attempt; it is made once the lease runs out", "id", job.Notice.ID, "n", job.N, "err", err)
		return false
	case !kept:
		d.stats.Lost.Add(1)
		d.Logger.Warn("claim ran out before the attempt started; another worker took it over", "id", job.Notice.ID, "n", job.N)
		return false
	}
	return true
}

// leaseFor is the lease an attempt with this timeout needs: lease, or the
// timeout plus slack if that is longer and slack is set.
func leaseFor(timeout, lease, slack time.Duration) time.Duration {
	if slack > 0 && timeout+slack > lease {
		return timeout + slack
	}
	return lease
}

// LongestTimeout returns the longest attempt timeout serve can use with this
// config, given its --timeout, and what sets it ("--timeout" or a partner).
func (c *Config) LongestTimeout(def time.Duration) (time.Duration, string) {
	longest, who := def, "--timeout"
	for _, p := range c.Partners {
		if p.Timeout > longest {
			longest, who = p.Timeout, "partner "+p.Name
		}
	}
	return longest, who
}
