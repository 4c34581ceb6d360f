package notifier

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/notifier/notifier/backoff"
)

// Resolve returns n's partner: the one it names, else the one whose
// longest prefix matches its URL; nil if none.
func (r *Partners) Resolve(n *Notice) *Partner {
	if r == nil {
		return nil
	}
	if n.Partner != "" {
		return r.byName[n.Partner]
	}
	for _, pp := range r.byPrefix {
		if strings.HasPrefix(n.URL, pp.prefix) {
			return pp.p
		}
	}
	return nil
}

// ErrUnknownPartner is returned by ApplyPartner for a partner that serve
// has not published.
var ErrUnknownPartner = errors.New("unknown partner")

// ApplyPartner resolves n's partner for enqueue from the summaries serve
// published: the one n names (it must exist), else the longest URL prefix
// match. It sets n.Partner, and n.Schedule from the partner when
// keepSchedule is false.
func ApplyPartner(n *Notice, published map[string]PartnerSummary, keepSchedule bool) error {
	var s *PartnerSummary
	if n.Partner != "" {
		ps, ok := published[n.Partner]
		if !ok {
			return fmt.Errorf("notice %s: partner %q: %w (not in the config of the running serve)", n.ID, n.Partner, ErrUnknownPartner)
		}
		s = &ps
	} else {
		best := -1
		for _, ps := range published {
			for _, pre := range ps.URLPrefix {
				if len(pre) > best && strings.HasPrefix(n.URL, pre) {
					best, s = len(pre), &ps
				}
			}
		}
	}
	if s == nil {
		return nil
	}
	n.Partner = s.Name
	if !keepSchedule && s.Schedule != "" {
		sched, err := backoff.Parse(s.Schedule)
		if err != nil {
			return fmt.Errorf("partner %s: published schedule: %w", s.Name, err)
		}
		n.Schedule = sched
	}
	return nil
}

// WithPartners returns an Enqueuer that resolves each notice's partner
// (ApplyPartner) before handing it to q; a notice whose line named no
// schedule gets its partner's. Notices whose partner is unknown are refused
// one by one.
func WithPartners(q Enqueuer, published map[string]PartnerSummary) Enqueuer {
	if len(published) == 0 {
		return q
	}
	return partnerEnqueuer{q, published}
}

type partnerEnqueuer struct {
	q         Enqueuer
	published map[string]PartnerSummary
}

func (p partnerEnqueuer) Enqueue(ctx context.Context, ns []Notice) ([]error, error) {
	errs := make([]error, len(ns))
	keep := make([]Notice, 0, len(ns))
	idx := make([]int, 0, len(ns))
	for i := range ns {
		if err := ApplyPartner(&ns[i], p.published, !ns[i].scheduleDefaulted); err != nil {
			errs[i] = err
			continue
		}
		keep, idx = append(keep, ns[i]), append(idx, i)
	}
	kerrs, err := p.q.Enqueue(ctx, keep)
	for j, e := range kerrs {
		errs[idx[j]] = e
	}
	return errs, err
}
